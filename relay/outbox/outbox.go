// Package outbox is the development backend of the managed account: instead
// of calling Amazon SES it writes each message to <dir>/<eml_id>.eml, the
// exact bytes that would have been sent, so a developer (or a test) can
// open them with any mail reader.
//
// Writes are atomic and durable — temporary file in the same directory,
// fsync, rename, fsync of the directory — so a crash leaves either the
// whole message or none, and a resend of the same id replaces the file.
package outbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/routing"
)

// idRE is the shape of message ids, a cluster node's ("-<node_id>", as
// [cluster] node_id allows it) included; anything else could escape dir.
var idRE = regexp.MustCompile(`^eml_[a-z0-9]{24}(-[a-z0-9][a-z0-9-]{0,31})?$`)

// Outbox writes messages to a directory. It is safe for concurrent use.
type Outbox struct {
	dir string
}

var _ relay.Provider = (*Outbox)(nil)

// New creates dir (mode 0700, parents included) if needed. An existing
// directory keeps its mode.
func New(dir string) (*Outbox, error) {
	if dir == "" {
		return nil, fmt.Errorf("outbox: directory is required")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	return &Outbox{dir: abs}, nil
}

// Dir is the absolute directory messages are written to.
func (o *Outbox) Dir() string { return o.dir }

// Path is the file a message id is written to.
func (o *Outbox) Path(id string) string { return filepath.Join(o.dir, id+".eml") }

// Send writes body to <MessageID>.eml. The recipients are not recorded:
// the file is what the upstream would have received as content.
func (o *Outbox) Send(ctx context.Context, env relay.Envelope, body []byte) (*relay.Result, error) {
	if !idRE.MatchString(env.MessageID) {
		return nil, &relay.DeliveryError{
			Failure: routing.Failure{Phase: routing.PhaseData, Text: "invalid message id"},
			Class:   relay.ClassPtr(routing.Permanent),
			Err:     fmt.Errorf("outbox: invalid message id %q", env.MessageID),
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, writeFailure(err)
	}
	name := env.MessageID + ".eml"
	if derr := env.BeforeData(); derr != nil {
		return nil, derr
	}
	if err := writeAtomic(o.dir, name, body); err != nil {
		return nil, writeFailure(err)
	}
	return &relay.Result{UpstreamID: name, Reply: "250 2.0.0 Ok: queued as " + name}, nil
}

// writeFailure is a local I/O problem (disk full, permissions): retry
// later, and it says nothing about recipients.
func writeFailure(err error) *relay.DeliveryError {
	return &relay.DeliveryError{
		Failure: routing.Failure{Phase: routing.PhaseData, Text: err.Error()},
		Class:   relay.ClassPtr(routing.Transient),
		Err:     fmt.Errorf("outbox: %w", err),
	}
}

// writeAtomic replaces dir/name with data so that readers and crashes see
// the old file or the new one, never a part.
func writeAtomic(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes the rename durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

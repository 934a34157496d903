package outbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/routing"
)

const id = "eml_0123456789abcdefghijklmn"

func newOutbox(t *testing.T) *Outbox {
	t.Helper()
	o, err := New(filepath.Join(t.TempDir(), "spool", "outbox"))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// files lists the directory, temporary files included.
func files(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestNew(t *testing.T) {
	o := newOutbox(t)
	fi, err := os.Stat(o.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v", fi.Mode())
	}
	if _, err := New(""); err == nil {
		t.Error("New(\"\") succeeded")
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := New(filepath.Join(file, "sub")); err == nil {
		t.Error("New under a file succeeded")
	}
}

func TestSend(t *testing.T) {
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"text", []byte("Subject: hi\r\n\r\nhello\r\n.dot line\r\n")},
		{"empty", []byte{}},
		{"binary and no final newline", []byte{0, 1, 2, 0xff, '\n', '.'}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOutbox(t)
			res, err := o.Send(context.Background(), relay.Envelope{MessageID: id, To: []string{"b@example.com"}}, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if res.UpstreamID != id+".eml" || res.Reply == "" || len(res.Refused) != 0 {
				t.Errorf("result = %+v", res)
			}
			got, err := os.ReadFile(o.Path(id))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.body) {
				t.Errorf("file = %q, want %q", got, tc.body)
			}
			if names := files(t, o.Dir()); len(names) != 1 || names[0] != id+".eml" {
				t.Errorf("dir holds %v", names)
			}
		})
	}
}

func TestResendOverwrites(t *testing.T) {
	o := newOutbox(t)
	env := relay.Envelope{MessageID: id}
	for _, b := range []string{"first version, longer", "second"} {
		if _, err := o.Send(context.Background(), env, []byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(o.Path(id))
	if string(got) != "second" {
		t.Errorf("file = %q", got)
	}
	if names := files(t, o.Dir()); len(names) != 1 {
		t.Errorf("dir holds %v", names)
	}
}

func TestInvalidID(t *testing.T) {
	o := newOutbox(t)
	for _, bad := range []string{
		"", "eml_", "../eml_0123456789abcdefghijklmn", "eml_0123456789abcdefghijklm/",
		"eml_0123456789ABCDEFGHIJKLMN", "eml_0123456789abcdefghijklmno", "msg_0123456789abcdefghijklmn",
		"eml_0123456789abcdefghijkl\\n", "eml_0123456789abcdefghijklmn\n",
		"eml_0123456789abcdefghijklmn-", "eml_0123456789abcdefghijklmn--n1", "eml_0123456789abcdefghijklmn-../x",
		"eml_0123456789abcdefghijklmn-N1", "eml_0123456789abcdefghijklmn-" + strings.Repeat("a", 33),
	} {
		_, err := o.Send(context.Background(), relay.Envelope{MessageID: bad}, []byte("x"))
		derr, ok := err.(*relay.DeliveryError)
		if !ok || derr.Classified() != routing.Permanent {
			t.Errorf("id %q: %v, want a permanent DeliveryError", bad, err)
		}
	}
	if names := files(t, o.Dir()); len(names) != 0 {
		t.Errorf("dir holds %v", names)
	}
}

// TestClusterNodeID: a cluster node's message ID (eml_<24>-<node_id>)
// is written like any other; before, every managed-account message of a
// cluster node was rejected as "invalid message id".
func TestClusterNodeID(t *testing.T) {
	o := newOutbox(t)
	id := "eml_0123456789abcdefghijklmn-relay-1"
	if _, err := o.Send(context.Background(), relay.Envelope{MessageID: id}, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if names := files(t, o.Dir()); len(names) != 1 || names[0] != id+".eml" {
		t.Errorf("dir holds %v", names)
	}
}

func TestWriteFailureIsTransient(t *testing.T) {
	o := newOutbox(t)
	if err := os.RemoveAll(o.Dir()); err != nil {
		t.Fatal(err)
	}
	_, err := o.Send(context.Background(), relay.Envelope{MessageID: id}, []byte("x"))
	derr, ok := err.(*relay.DeliveryError)
	if !ok || derr.Classified() != routing.Transient {
		t.Fatalf("%v, want a transient DeliveryError", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := newOutbox(t).Send(ctx, relay.Envelope{MessageID: id}, []byte("x")); err == nil {
		t.Error("send with a cancelled context succeeded")
	}
}

func TestConcurrentSends(t *testing.T) {
	o := newOutbox(t)
	const n = 64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// Every id twice, racing, to check overwrites stay whole.
			mid := fmt.Sprintf("eml_%024d", i/2)
			body := bytes.Repeat([]byte(mid+"\r\n"), 1000)
			if _, err := o.Send(context.Background(), relay.Envelope{MessageID: mid}, body); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	names := files(t, o.Dir())
	if len(names) != n/2 {
		t.Fatalf("dir holds %d files, want %d: %v", len(names), n/2, names)
	}
	for _, name := range names {
		got, err := os.ReadFile(filepath.Join(o.Dir(), name))
		if err != nil {
			t.Fatal(err)
		}
		mid := name[:len(name)-len(".eml")]
		if !bytes.Equal(got, bytes.Repeat([]byte(mid+"\r\n"), 1000)) {
			t.Errorf("%s is not whole", name)
		}
	}
}

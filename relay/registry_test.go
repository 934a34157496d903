package relay

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// closingProvider counts Close calls and refuses sends once closed, as the
// SMTP provider's pool does.
type closingProvider struct{ closed atomic.Int32 }

func (p *closingProvider) Send(context.Context, Envelope, []byte) (*Result, error) {
	if p.closed.Load() > 0 {
		return nil, &DeliveryError{Err: context.Canceled}
	}
	return &Result{}, nil
}

func (p *closingProvider) Close() error { p.closed.Add(1); return nil }

// TestRegistryClosesReplacedProviderAfterItsSends: an edit of a provider
// (here the timestamp a connection test writes) builds a new instance for
// new sends, and the old one is closed only when the sends holding it are
// over, not under them.
func TestRegistryClosesReplacedProviderAfterItsSends(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "reg.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sealer, _ := store.NewSealer("test-secret-key-0123456789")
	reg := NewRegistry(st, sealer)
	var built []*closingProvider
	reg.Register("fake", func(*store.Provider, string) (Provider, error) {
		p := &closingProvider{}
		built = append(built, p)
		return p, nil
	})
	rec := &store.Provider{ID: store.NewID(store.PrefixProvider), TeamID: "team_x", Type: "fake", Status: store.StatusActive}
	if err := st.CreateProvider(rec); err != nil {
		t.Fatal(err)
	}
	v1, _ := st.Provider(rec.ID)
	p1, release1, err := reg.Acquire(v1)
	if err != nil {
		t.Fatal(err)
	}
	_, releaseAgain, _ := reg.Acquire(v1) // a second send on the same version
	releaseAgain()

	now := time.Now()
	v2, err := st.UpdateProvider("", rec.ID, 0, func(p *store.Provider) error { p.LastTestedAt = &now; return nil })
	if err != nil {
		t.Fatal(err)
	}
	p2, release2, err := reg.Acquire(v2)
	if err != nil {
		t.Fatal(err)
	}
	if p2 == p1 || len(built) != 2 {
		t.Fatalf("a new version must get a new instance (built %d)", len(built))
	}
	if built[0].closed.Load() != 0 {
		t.Fatal("the replaced instance was closed under a send still using it")
	}
	if _, err := p1.Send(context.Background(), Envelope{}, nil); err != nil {
		t.Fatalf("send on the replaced instance before its release: %v", err)
	}
	release1()
	if built[0].closed.Load() != 1 {
		t.Fatalf("replaced instance closed %d times after its last send, want 1", built[0].closed.Load())
	}
	release2()
	reg.Close()
	if built[1].closed.Load() != 1 || built[0].closed.Load() != 1 {
		t.Fatalf("after Close: closes %d and %d, want 1 each", built[0].closed.Load(), built[1].closed.Load())
	}
}

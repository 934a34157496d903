package relay

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
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

// registryWithFake is a registry over a fresh store with one provider of
// type "fake"; built lists the instances the factory made.
func registryWithFake(t *testing.T) (*Registry, *store.Store, *store.Provider, *[]*closingProvider) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "reg.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sealer, _ := store.NewSealer("test-secret-key-0123456789")
	reg := NewRegistry(st, sealer)
	built := &[]*closingProvider{}
	reg.Register("fake", func(*store.Provider, string) (Provider, error) {
		p := &closingProvider{}
		*built = append(*built, p)
		return p, nil
	})
	rec := &store.Provider{ID: store.NewID(store.PrefixProvider), TeamID: "team_x", Type: "fake", Status: state.ProviderActive,
		SMTPHost: "mx1.example", SMTPPort: 25}
	if err := st.CreateProvider(rec); err != nil {
		t.Fatal(err)
	}
	v1, _ := st.Provider(rec.ID)
	return reg, st, v1, built
}

// TestRegistryClosesReplacedProviderAfterItsSends: an edit of a provider's
// connection settings builds a new instance for new sends, and the old one
// is closed only when the sends holding it are over, not under them.
func TestRegistryClosesReplacedProviderAfterItsSends(t *testing.T) {
	reg, st, v1, builtp := registryWithFake(t)
	rec := v1
	p1, release1, err := reg.Acquire(v1)
	if err != nil {
		t.Fatal(err)
	}
	_, releaseAgain, _ := reg.Acquire(v1) // a second send on the same version
	releaseAgain()

	v2, err := st.UpdateProvider("", rec.ID, 0, func(p *store.Provider) error { p.SMTPHost = "mx2.example"; return nil })
	if err != nil {
		t.Fatal(err)
	}
	p2, release2, err := reg.Acquire(v2)
	if err != nil {
		t.Fatal(err)
	}
	built := *builtp
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

// TestRegistryKeepsInstanceAcrossBookkeepingWrites: writes that do not
// touch how the provider connects (a test's timestamp, status, name,
// weight, quotas, group) keep the live instance and its pooled
// connections; the next connection setting that changes replaces it.
func TestRegistryKeepsInstanceAcrossBookkeepingWrites(t *testing.T) {
	reg, st, v1, built := registryWithFake(t)
	p1, release, err := reg.Acquire(v1)
	if err != nil {
		t.Fatal(err)
	}
	release()
	now := time.Now()
	w := 30
	for _, edit := range []func(p *store.Provider){
		func(p *store.Provider) { p.LastTestedAt = &now },
		func(p *store.Provider) { p.LastUsedAt = &now },
		func(p *store.Provider) { p.Status, p.StatusReason = state.ProviderError, "535 bad credentials" },
		func(p *store.Provider) { p.Status, p.StatusReason, p.ActivatedAt = state.ProviderActive, "", now },
		func(p *store.Provider) { p.Name = "renamed" },
		func(p *store.Provider) { p.Percentage = &w },
		func(p *store.Provider) { p.Quotas.PerDay = &store.Range{Min: 5, Max: 5} },
		func(p *store.Provider) { p.GroupID = "dgrp_x" },
		func(p *store.Provider) {
			p.FromEmail, p.ReplyToEmail, p.TrackingDomain = "noreply@example.com", "help@example.com", "t.example.com"
		},
	} {
		v, err := st.UpdateProvider("", v1.ID, 0, func(p *store.Provider) error { edit(p); return nil })
		if err != nil {
			t.Fatal(err)
		}
		p, release, err := reg.Acquire(v)
		if err != nil {
			t.Fatal(err)
		}
		release()
		if p != p1 || len(*built) != 1 || (*built)[0].closed.Load() != 0 {
			t.Fatalf("version %d: a bookkeeping write replaced the instance (built %d)", v.Version, len(*built))
		}
	}
	for i, edit := range []func(p *store.Provider){
		func(p *store.Provider) { p.SMTPPort = 587 },
		func(p *store.Provider) { p.SMTPPasswordSealed = reg.sealer.Seal("new password") },
		func(p *store.Provider) { p.OAuthTokenSealed = []byte("reconnected") },
		func(p *store.Provider) { p.SMTPHost = "mx3.example" },
	} {
		v, err := st.UpdateProvider("", v1.ID, 0, func(p *store.Provider) error { edit(p); return nil })
		if err != nil {
			t.Fatal(err)
		}
		_, release, err := reg.Acquire(v)
		if err != nil {
			t.Fatal(err)
		}
		release()
		// An idle replaced instance is closed apart from the lock (retire).
		for deadline := time.Now().Add(2 * time.Second); (*built)[i].closed.Load() == 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		if len(*built) != i+2 || (*built)[i].closed.Load() != 1 {
			t.Fatalf("edit %d of a connection setting: built %d instances, want %d, the previous one closed", i, len(*built), i+2)
		}
	}
}

// TestRegistryFailedRebuildKeepsCurrent: an edit whose instance cannot be
// built fails the sends that see it and leaves the current instance open;
// editing back uses it again, never a closed one. A record older than the
// instance (read before an edit) gets the current instance too.
func TestRegistryFailedRebuildKeepsCurrent(t *testing.T) {
	reg, st, v1, built := registryWithFake(t)
	reg.Register("fake", func(p *store.Provider, _ string) (Provider, error) {
		if p.SMTPHost == "" {
			return nil, errors.New("no host")
		}
		cp := &closingProvider{}
		*built = append(*built, cp)
		return cp, nil
	})
	p1, release, err := reg.Acquire(v1)
	if err != nil {
		t.Fatal(err)
	}
	release()
	v2, err := st.UpdateProvider("", v1.ID, 0, func(p *store.Provider) error { p.SMTPHost = ""; return nil })
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, _, err := reg.Acquire(v2); err == nil {
			t.Fatal("an unbuildable record got an instance")
		}
	}
	v3, err := st.UpdateProvider("", v1.ID, 0, func(p *store.Provider) error { p.SMTPHost = v1.SMTPHost; return nil })
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []*store.Provider{v3, v1} {
		p, release, err := reg.Acquire(v)
		if err != nil {
			t.Fatal(err)
		}
		release()
		if p != p1 || (*built)[0].closed.Load() != 0 || len(*built) != 1 {
			t.Fatalf("version %d: got %p (first %p), first closed %d times, %d built", v.Version, p, p1, (*built)[0].closed.Load(), len(*built))
		}
		if _, err := p.Send(context.Background(), Envelope{}, nil); err != nil {
			t.Fatalf("version %d: send on the kept instance: %v", v.Version, err)
		}
	}
}

// TestRegistryRetiresDeletedProvider: deleting a provider closes its
// instance once the send holding it is over and drops it from the
// registry (and so from /metrics); the other providers' instances stay.
func TestRegistryRetiresDeletedProvider(t *testing.T) {
	reg, st, v1, built := registryWithFake(t)
	other := &store.Provider{ID: store.NewID(store.PrefixProvider), TeamID: "team_x", Type: "fake", Status: state.ProviderActive}
	if err := st.CreateProvider(other); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.TeamProviders("team_x"); err != nil {
		t.Fatal(err)
	}
	_, release, err := reg.Acquire(v1)
	if err != nil {
		t.Fatal(err)
	}
	_, releaseOther, _ := reg.Acquire(other)
	releaseOther()
	if err := st.DeleteProvider("team_x", v1.ID, 0); err != nil {
		t.Fatal(err)
	}
	ps, err := reg.TeamProviders("team_x")
	if err != nil || len(ps) != 1 {
		t.Fatalf("team providers after delete: %d %v", len(ps), err)
	}
	if (*built)[0].closed.Load() != 0 {
		t.Fatal("the deleted provider's instance was closed under its send")
	}
	release()
	if (*built)[0].closed.Load() != 1 || (*built)[1].closed.Load() != 0 {
		t.Fatalf("after the send: deleted closed %d times (want 1), other %d (want 0)", (*built)[0].closed.Load(), (*built)[1].closed.Load())
	}
	reg.mu.Lock()
	_, kept := reg.instances[v1.ID]
	_, otherKept := reg.instances[other.ID]
	reg.mu.Unlock()
	if kept || !otherKept {
		t.Fatalf("instances after delete: deleted kept %v, other kept %v", kept, otherKept)
	}
	// A send that read the record before the delete still gets an
	// instance, closed after it and not cached again.
	_, release, err = reg.Acquire(v1)
	if err != nil {
		t.Fatal(err)
	}
	release()
	reg.mu.Lock()
	_, kept = reg.instances[v1.ID]
	reg.mu.Unlock()
	if last := (*built)[len(*built)-1]; kept || last.closed.Load() != 1 {
		t.Fatalf("a stale record's send after the delete: instance cached %v, closed %d times (want 1)", kept, last.closed.Load())
	}
}

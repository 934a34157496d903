package relay

import (
	"fmt"
	"sync"

	"github.com/smtpmux/smtpmux/store"
)

// Factory builds a Provider from its stored record and its unsealed secret.
type Factory func(p *store.Provider, secret string) (Provider, error)

// Registry maps provider types to factories and caches one live Provider
// per stored provider (with its connection pool), rebuilding it when the
// record's version changes. It also caches each team's provider list,
// reloading it only when the store says providers changed.
type Registry struct {
	store     *store.Store
	sealer    *store.Sealer
	factories map[string]Factory

	mu        sync.Mutex
	instances map[string]*instance
	gen       int64
	byTeam    map[string][]*store.Provider
}

// instance is one live Provider. users counts the sends holding it;
// retired is set once a newer version replaced it, and it is closed when
// the last of those sends ends.
type instance struct {
	version int64
	prov    Provider
	users   int
	retired bool
}

// NewRegistry returns an empty registry over st.
func NewRegistry(st *store.Store, sealer *store.Sealer) *Registry {
	return &Registry{store: st, sealer: sealer, factories: map[string]Factory{},
		instances: map[string]*instance{}, gen: -1}
}

// Register installs the factory for a provider type. It is called by cmd
// while wiring, before the scheduler starts.
func (r *Registry) Register(typ string, f Factory) { r.factories[typ] = f }

// Supports reports whether a factory is registered for typ.
func (r *Registry) Supports(typ string) bool { _, ok := r.factories[typ]; return ok }

// Build constructs a fresh, uncached Provider (for one-off use such as
// a connection test); the caller closes it.
func (r *Registry) Build(p *store.Provider) (Provider, error) {
	f, ok := r.factories[p.Type]
	if !ok {
		return nil, fmt.Errorf("provider type %q is not available in this build", p.Type)
	}
	secret, err := r.sealer.Open(sealedSecret(p))
	if err != nil {
		return nil, err
	}
	return f(p, secret)
}

// Acquire returns the live Provider for p, building it on first use or
// after p changed, and a release function to call once the send that uses
// it is over.
//
// A version replaced because the record changed (any write: an edit, a
// test's timestamp) is closed only when the sends still using it are
// done: closing it at once would fail those in progress and those waiting
// for one of its connections, and each would wait out a retry step for a
// reason that has nothing to do with the upstream.
func (r *Registry) Acquire(p *store.Provider) (Provider, func(), error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	in, ok := r.instances[p.ID]
	if !ok || in.version != p.Version {
		prov, err := r.Build(p)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			r.retire(in)
		}
		in = &instance{version: p.Version, prov: prov}
		r.instances[p.ID] = in
	}
	in.users++
	return in.prov, func() { r.release(in) }, nil
}

func (r *Registry) release(in *instance) {
	r.mu.Lock()
	in.users--
	last := in.retired && in.users == 0
	r.mu.Unlock()
	if last {
		closeProvider(in.prov)
	}
}

// retire closes in now if nothing uses it, else when its last user is
// done. r.mu is held: the close runs apart, since an SMTP pool's close
// says QUIT to each idle session (up to a second each with a hung
// upstream) and every attempt and MAIL FROM waits on r.mu.
func (r *Registry) retire(in *instance) {
	in.retired = true
	if in.users == 0 {
		go closeProvider(in.prov)
	}
}

// TeamProviders returns the team's providers from a cache that is reloaded
// whenever any provider was written. Callers must not modify the records.
func (r *Registry) TeamProviders(teamID string) ([]*store.Provider, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if g := r.store.ProvidersGen(); g != r.gen {
		all, err := r.store.Providers("")
		if err != nil {
			return nil, err
		}
		byTeam := map[string][]*store.Provider{}
		for _, p := range all {
			byTeam[p.TeamID] = append(byTeam[p.TeamID], p)
		}
		r.byTeam, r.gen = byTeam, g
	}
	return r.byTeam[teamID], nil
}

// Close closes every cached provider's connections.
func (r *Registry) Close() {
	r.mu.Lock()
	var idle []*instance
	for id, in := range r.instances {
		in.retired = true
		if in.users == 0 {
			idle = append(idle, in)
		}
		delete(r.instances, id)
	}
	r.mu.Unlock()
	for _, in := range idle {
		closeProvider(in.prov)
	}
}

func closeProvider(p Provider) {
	if c, ok := p.(Closer); ok {
		c.Close()
	}
}

// sealedSecret is the one secret a provider type replays upstream.
func sealedSecret(p *store.Provider) []byte {
	switch p.Type {
	case store.TypeSES:
		return p.SESSecretSealed
	case store.TypeGmail, store.TypeOutlook:
		return p.OAuthTokenSealed
	}
	return p.SMTPPasswordSealed
}

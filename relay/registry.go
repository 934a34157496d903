package relay

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// Factory builds a Provider from its stored record and its unsealed secret.
type Factory func(p *store.Provider, secret string) (Provider, error)

// Registry maps provider types to factories and caches one live Provider
// per stored provider (with its connection pool), rebuilding it when what
// it is built from changes (see buildKey). It also caches each team's provider list,
// reloading it only when the store says providers changed.
type Registry struct {
	store     *store.Store
	sealer    *store.Sealer
	factories map[string]Factory

	mu        sync.Mutex
	instances map[string]*instance
	gen       int64
	byTeam    map[string][]*store.Provider
	exists    map[string]bool // the provider IDs of generation gen
}

// instance is one live Provider. users counts the sends holding it;
// retired is set once a newer version replaced it, and it is closed when
// the last of those sends ends.
type instance struct {
	version int64  // the record's version it was last checked against
	key     string // buildKey of that record
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
// An instance replaced because its connection settings changed is closed
// only when the sends still using it are done: closing it at once would
// fail those in progress and those waiting for one of its connections,
// and each would wait out a retry step for a reason that has nothing to
// do with the upstream.
func (r *Registry) Acquire(p *store.Provider) (Provider, func(), error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	in, ok := r.instances[p.ID]
	// Only a newer record may replace the instance: callers can hold a
	// record older than the one it was built from (a team list read
	// before an edit), and must not flip it back and forth.
	if ok && p.Version > in.version {
		if key := buildKey(p); key == in.key {
			in.version = p.Version
		} else {
			ok = false
		}
	}
	if !ok {
		prov, err := r.Build(p)
		if err != nil {
			// The current instance, if any, stays: retiring it here would
			// leave a closed provider in the map for the next Acquire.
			return nil, nil, err
		}
		if old := r.instances[p.ID]; old != nil {
			r.evict(p.ID, old)
		}
		in = &instance{version: p.Version, key: buildKey(p), prov: prov}
		if r.deleted(p.ID) {
			// A send holding a record read before its provider was
			// deleted gets an instance of its own, closed after it, so
			// that nothing caches the deleted provider again.
			in.retired = true
		} else {
			r.instances[p.ID] = in
		}
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

// deleted reports whether the provider list last loaded, still current,
// lacks id. r.mu is held.
func (r *Registry) deleted(id string) bool {
	return r.exists != nil && r.gen == r.store.ProvidersGen() && !r.exists[id]
}

// evict takes provider id's instance in out of the cache and retires it;
// r.mu is held. A retired instance must never be handed out again.
func (r *Registry) evict(id string, in *instance) {
	delete(r.instances, id)
	r.retire(in)
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

// buildKey is the part of a provider's record its live instance is built
// from: all of it but the fields routing, shaping, reporting and the API
// read from the record itself (timestamps, status, name, weight, quotas,
// group, sender defaults, tracking domain). A test's timestamp, an
// activation or a weight change thus keeps the instance and its pooled
// connections; rebuilding on those let a replaced pool finish its sends
// while the new one opened its own, up to twice connections_per_provider
// at the upstream. Anything else in the JSON record, including a field
// added later, rebuilds: keeping a stale instance would be the worse
// mistake. (An OAuth account's sealed token is in the key: the first
// write after a token refresh rebuilds its API client, which holds no
// connections, with the refreshed token.)
func buildKey(p *store.Provider) string {
	c := *p
	c.Name, c.Status, c.StatusReason = "", "", ""
	c.Quotas, c.Percentage, c.GroupID = store.Quotas{}, nil, ""
	c.FromEmail, c.FromName, c.ReplyToEmail, c.ReplyToName, c.TrackingDomain = "", "", "", "", ""
	c.UpdatedAt, c.ActivatedAt, c.LastTestedAt, c.LastUsedAt, c.Version = time.Time{}, time.Time{}, nil, nil, 0
	b, err := json.Marshal(&c)
	if err != nil {
		return fmt.Sprintf("unencodable %d", p.Version) // never equal to another version's
	}
	return string(b)
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
		exists := make(map[string]bool, len(all))
		for _, p := range all {
			byTeam[p.TeamID] = append(byTeam[p.TeamID], p)
			exists[p.ID] = true
		}
		// A deleted provider's instance goes too, once its sends are
		// over: its pool would keep its reaper, its connections until
		// they idle out, and its series at /metrics.
		for id, in := range r.instances {
			if !exists[id] {
				r.evict(id, in)
			}
		}
		r.byTeam, r.gen, r.exists = byTeam, g, exists
	}
	return r.byTeam[teamID], nil
}

// ConnectionLimits reports, for each live provider with a connection pool,
// how many connections it opens at most now: connections_per_provider
// less what the upstream turned away (relay/smtp/busy.go).
func (r *Registry) ConnectionLimits() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for id, in := range r.instances {
		if l, ok := in.prov.(interface{ Limit() int }); ok {
			out[id] = l.Limit()
		}
	}
	return out
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

package cluster

import (
	"cmp"
	"encoding/json"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smtpmux/smtpmux/relay/oauth"
	"github.com/smtpmux/smtpmux/store"
)

// OAuthStates keeps the pending Gmail / Microsoft 365 connect flows in
// etcd (oauth.StateStore), so that a flow started on one node (the
// authorization URL) finishes on whichever node the provider's redirect
// reaches behind the balancer.
//
// Key layout:
//
//	P oauth/states/<state>          the flow (oauth.State as JSON)
//	P oauth/teams/<team>/<state>    the team's index entry: its expiry
//
// Both are written in one transaction, on a lease shared by the flows
// issued in the same minute that ends the flow's TTL after that minute:
// an abandoned flow leaves etcd by itself. Consume is a compare-and-delete
// transaction on the flow's mod_revision, so a state is used once in the
// whole cluster however many callbacks race.
//
// The flow's PKCE verifier is a secret (with an intercepted code it
// completes the exchange), so it is sealed with the node's secret_key,
// as every other secret kept in etcd; all nodes share that key.
type OAuthStates struct {
	n      *Node
	sealer *store.Sealer
	ttl    time.Duration
	now    func() time.Time
	leases *bucketLeases
}

// NewOAuthStates keeps n's connect flows in etcd, their verifiers sealed
// with sealer; ttl ≤ 0 is oauth.StateTTL, nil now is time.Now.
func NewOAuthStates(n *Node, sealer *store.Sealer, ttl time.Duration, now func() time.Time) *OAuthStates {
	if ttl <= 0 {
		ttl = oauth.StateTTL
	}
	if now == nil {
		now = time.Now
	}
	return &OAuthStates{n: n, sealer: sealer, ttl: ttl, now: now, leases: newBucketLeases(n, time.Minute, ttl)}
}

var _ oauth.StateStore = (*OAuthStates)(nil)

func (s *OAuthStates) stateKey(value string) string { return s.n.cfg.Prefix + "oauth/states/" + value }
func (s *OAuthStates) teamPrefix(team string) string {
	return s.n.cfg.Prefix + "oauth/teams/" + team + "/"
}

// Issue starts a flow. As the in-memory store does, a team with
// MaxStatesPerTeam live flows loses its oldest, and MaxStates flows in
// all refuse a new one (ErrTooManyStates). Those two bounds are counted
// before the write, not inside it: two nodes issuing at once may each
// let one through, which bounds memory just as well.
func (s *OAuthStates) Issue(teamID, kind string) (oauth.State, error) {
	now := s.now()
	st := oauth.NewFlow(teamID, kind, now.Add(s.ttl))
	kept := storedState{State: st, SealedVerifier: s.sealer.Seal(st.Verifier)}
	kept.Verifier = ""
	val, err := json.Marshal(kept)
	if err != nil {
		return oauth.State{}, err
	}
	ctx, cancel := s.n.opCtx()
	defer cancel()
	all, err := s.n.cli.Get(ctx, s.n.cfg.Prefix+"oauth/states/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return oauth.State{}, unavailable("counting OAuth states", err)
	}
	if all.Count >= oauth.MaxStates {
		return oauth.State{}, oauth.ErrTooManyStates
	}
	team, err := s.n.cli.Get(ctx, s.teamPrefix(teamID), clientv3.WithPrefix())
	if err != nil {
		return oauth.State{}, unavailable("reading the team's OAuth states", err)
	}
	type entry struct {
		value   string
		expires int64
	}
	var live []entry
	for _, kv := range team.Kvs {
		var exp int64
		if json.Unmarshal(kv.Value, &exp) != nil || exp <= now.UnixNano() {
			continue // ended; its lease takes it away
		}
		live = append(live, entry{strings.TrimPrefix(string(kv.Key), s.teamPrefix(teamID)), exp})
	}
	exp, _ := json.Marshal(st.Expires.UnixNano())
	for range 2 {
		lease, err := s.leases.get(ctx, now)
		if err != nil {
			return oauth.State{}, err
		}
		ops := []clientv3.Op{
			clientv3.OpPut(s.stateKey(st.Value), string(val), clientv3.WithLease(lease)),
			clientv3.OpPut(s.teamPrefix(teamID)+st.Value, string(exp), clientv3.WithLease(lease)),
		}
		// A user who started over does not need the abandoned attempts:
		// the oldest make room. All of the excess goes, not one: starts
		// racing (on several nodes, or one client's parallel calls) each
		// read the same live set and let one through, and dropping a
		// single flow per start would let that overshoot pile up until
		// one team held MaxStates and no other team could connect.
		slices.SortFunc(live, func(a, b entry) int { return cmp.Compare(a.expires, b.expires) })
		excess := min(len(live)-oauth.MaxStatesPerTeam+1, maxEvictions)
		for _, old := range live[:max(excess, 0)] {
			ops = append(ops, clientv3.OpDelete(s.stateKey(old.value)), clientv3.OpDelete(s.teamPrefix(teamID)+old.value))
		}
		_, err = s.n.cli.Txn(ctx).Then(ops...).Commit()
		if leaseGone(err) {
			s.leases.forget(now, lease)
			continue
		}
		if err != nil {
			return oauth.State{}, unavailable("storing an OAuth state", err)
		}
		s.n.contact()
		return st, nil
	}
	return oauth.State{}, unavailable("storing an OAuth state", errLeaseLost)
}

// maxEvictions bounds the flows one Issue drops (two deletes each), so
// that its transaction stays within etcd's default --max-txn-ops (128);
// a larger excess shrinks by as much at each further start.
const maxEvictions = 60

// Consume ends the flow of value once in the whole cluster: the flow is
// read, then deleted by a transaction that holds only if it is still the
// flow that was read. Of callbacks racing on one state, one gets it.
func (s *OAuthStates) Consume(value string) (oauth.State, error) {
	ctx, cancel := s.n.opCtx()
	defer cancel()
	k := s.stateKey(value)
	resp, err := s.n.cli.Get(ctx, k)
	if err != nil {
		return oauth.State{}, unavailable("reading an OAuth state", err)
	}
	if len(resp.Kvs) == 0 {
		return oauth.State{}, oauth.ErrStateInvalid
	}
	var kept storedState
	if err := json.Unmarshal(resp.Kvs[0].Value, &kept); err != nil || kept.Value != value {
		return oauth.State{}, oauth.ErrStateInvalid
	}
	st := kept.State
	if st.Verifier, err = s.sealer.Open(kept.SealedVerifier); err != nil || st.Verifier == "" {
		return oauth.State{}, oauth.ErrStateInvalid
	}
	txn, err := s.n.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", resp.Kvs[0].ModRevision)).
		Then(clientv3.OpDelete(k), clientv3.OpDelete(s.teamPrefix(st.TeamID)+value)).Commit()
	if err != nil {
		return oauth.State{}, unavailable("consuming an OAuth state", err)
	}
	s.n.contact()
	if !txn.Succeeded || !s.now().Before(st.Expires) {
		return oauth.State{}, oauth.ErrStateInvalid
	}
	return st, nil
}

// storedState is a flow as etcd keeps it: its verifier only sealed.
type storedState struct {
	oauth.State
	SealedVerifier []byte `json:"verifier_sealed"`
}

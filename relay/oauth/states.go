package oauth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Limits of States.
const (
	// StateTTL is how long a connect flow may take from start to callback
	// (SPEC §7: ten minutes).
	StateTTL = 10 * time.Minute
	// MaxStates bounds the memory all pending flows take.
	MaxStates = 10000
	// MaxStatesPerTeam bounds one team's pending flows, so that one team
	// starting flows in a loop cannot use up MaxStates for the others.
	MaxStatesPerTeam = 20
)

// Errors of States.
var (
	// ErrStateInvalid is a callback whose state was never issued, was
	// already used, or expired. The callback should answer 400 and ask
	// the user to start again.
	ErrStateInvalid = errors.New("oauth: unknown, used or expired state")
	// ErrTooManyStates means MaxStates flows are pending.
	ErrTooManyStates = errors.New("oauth: too many pending connect flows, try again later")
)

// NewState returns a fresh state value: 256 random bits, base64url
// without padding, safe in a URL query as is.
func NewState() string {
	b := make([]byte, 32)
	rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// State is one pending connect flow.
type State struct {
	Value  string // the state parameter
	TeamID string // the team that started the flow
	Kind   string // KindGoogle or KindMicrosoft
	// Verifier is the PKCE code verifier: the authorization URL carries
	// its S256 challenge and the code exchange the verifier, so a code
	// intercepted on its way back is useless to anyone else.
	Verifier string
	Expires  time.Time
}

// StateStore keeps pending connect flows: each state is single-use and
// expires after its TTL. States is the in-memory one; cluster mode keeps
// them in etcd (cluster.OAuthStates) under the same rules.
type StateStore interface {
	// Issue starts a flow for teamID and kind (within MaxStatesPerTeam
	// and MaxStates, as States.Issue).
	Issue(teamID, kind string) (State, error)
	// Consume ends the flow of value: it returns the flow once and never
	// again, and ErrStateInvalid when it is unknown, used or expired.
	Consume(value string) (State, error)
}

var _ StateStore = (*States)(nil)

// NewFlow is a fresh flow for teamID and kind, expiring at expires: a
// new state value and PKCE verifier (for StateStore implementations).
func NewFlow(teamID, kind string, expires time.Time) State {
	return State{Value: NewState(), TeamID: teamID, Kind: kind, Verifier: oauth2.GenerateVerifier(), Expires: expires}
}

// States is an in-memory store of pending connect flows. A state is
// single-use and expires after its TTL. Pending flows are lost on restart,
// which only means the user clicks "connect" again. The zero value is not
// usable; call NewStates. Safe for concurrent use.
type States struct {
	ttl     time.Duration
	now     func() time.Time
	mu      sync.Mutex
	pending map[string]State
}

// NewStates returns an empty store; ttl ≤ 0 means StateTTL and a nil now
// means time.Now (tests pass a fake clock).
func NewStates(ttl time.Duration, now func() time.Time) *States {
	if ttl <= 0 {
		ttl = StateTTL
	}
	if now == nil {
		now = time.Now
	}
	return &States{ttl: ttl, now: now, pending: map[string]State{}}
}

// Issue starts a flow for teamID and kind. When the team already has
// MaxStatesPerTeam flows pending its oldest is dropped: a user who
// started over does not need the abandoned attempts.
func (s *States) Issue(teamID, kind string) (State, error) {
	now := s.now()
	st := NewFlow(teamID, kind, now.Add(s.ttl))
	s.mu.Lock()
	defer s.mu.Unlock()
	// Issue is rare (a person clicking), so a scan is cheaper to reason
	// about than an expiry heap.
	var oldest string
	team := 0
	for k, p := range s.pending {
		if !now.Before(p.Expires) {
			delete(s.pending, k)
			continue
		}
		if p.TeamID == teamID {
			team++
			if oldest == "" || p.Expires.Before(s.pending[oldest].Expires) {
				oldest = k
			}
		}
	}
	if team >= MaxStatesPerTeam {
		delete(s.pending, oldest)
	}
	if len(s.pending) >= MaxStates {
		return State{}, ErrTooManyStates
	}
	s.pending[st.Value] = st
	return st, nil
}

// Consume ends the flow of value: it returns the flow once and never
// again, and ErrStateInvalid when it is unknown or expired.
func (s *States) Consume(value string) (State, error) {
	s.mu.Lock()
	st, ok := s.pending[value]
	delete(s.pending, value)
	s.mu.Unlock()
	if !ok || !s.now().Before(st.Expires) {
		return State{}, ErrStateInvalid
	}
	return st, nil
}

// Len is the number of flows held, expired ones included until the next
// Issue sweeps them.
func (s *States) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

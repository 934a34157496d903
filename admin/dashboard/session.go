package dashboard

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// cookieName is the session cookie. It carries only a random ID: the key
// secret stays in server memory and never reaches the browser.
const cookieName = "smx_session"

// maxSessions bounds memory: past it the oldest idle session goes first.
const maxSessions = 10000

// maxSessionsPerOwner caps one team's (or the operator's) sessions.
// Signing in is not limited while the key is right, so without it one
// team could fill the table and push every other team's sessions out.
const maxSessionsPerOwner = 50

// session is one signed-in browser.
type session struct {
	id   string
	csrf string // form token, one per session
	// secret is the credential every API call of this session carries:
	// the team's root key, or the operator token when operator is set.
	secret   string
	operator bool
	key      *store.APIKey // the root key as of sign-in (names and permissions for display)
	last     time.Time
	flash    string // a one-shot notice for the next page ("Provider activated")
	flashErr bool
	reveal   *reveal // a secret just made, for the next GET (reveal.go)
}

// allows reports whether the session's key holds perm, to decide which
// buttons to draw. It decides nothing: the API call behind each button
// checks the permission again.
func (s *session) allows(perm string) bool { return s.key != nil && s.key.Allows(perm) }

type sessions struct {
	mu      sync.Mutex
	idle    time.Duration
	now     func() time.Time
	m       map[string]*session
	byOwner map[string]int // live sessions per owner (see owner)
}

func newSessions(idle time.Duration, now func() time.Time) *sessions {
	return &sessions{idle: idle, now: now, m: map[string]*session{}, byOwner: map[string]int{}}
}

// owner is whose session s is: its team, or the operator.
func (s *session) owner() string {
	if s.operator || s.key == nil {
		return "\x00operator"
	}
	return s.key.TeamID
}

// deleteLocked removes s, keeping the per-owner count.
func (ss *sessions) deleteLocked(s *session) {
	if ss.m[s.id] != s {
		return
	}
	delete(ss.m, s.id)
	if ss.byOwner[s.owner()]--; ss.byOwner[s.owner()] <= 0 {
		delete(ss.byOwner, s.owner())
	}
}

func randomToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session under a fresh ID. Sign-in always makes a new
// one, so an ID planted in a browser before sign-in (session fixation)
// never becomes a signed-in session.
func (ss *sessions) create(secret string, key *store.APIKey, operator bool) *session {
	s := &session{id: randomToken(), csrf: randomToken(), secret: secret, key: key, operator: operator, last: ss.now()}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	// An owner at its cap loses its own oldest session, never anyone
	// else's; only then can the table as a whole be full.
	if ss.byOwner[s.owner()] >= maxSessionsPerOwner {
		ss.evictLocked(s.owner())
	}
	if len(ss.m) >= maxSessions {
		ss.evictLocked("")
	}
	ss.m[s.id] = s
	ss.byOwner[s.owner()]++
	return s
}

// evictLocked drops expired sessions, and the oldest one (of owner, when
// not "") if none of those was.
func (ss *sessions) evictLocked(owner string) {
	now := ss.now()
	var oldest *session
	n := len(ss.m)
	for _, s := range ss.m {
		if now.Sub(s.last) > ss.idle {
			ss.deleteLocked(s)
		} else if (owner == "" || s.owner() == owner) && (oldest == nil || s.last.Before(oldest.last)) {
			oldest = s
		}
	}
	full := len(ss.m) == n
	if owner != "" {
		full = ss.byOwner[owner] >= maxSessionsPerOwner
	}
	if full && oldest != nil {
		ss.deleteLocked(oldest)
	}
}

// get returns the live session with id and marks it used; an idle one
// has expired and is removed.
func (ss *sessions) get(id string) *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[id]
	if s == nil {
		return nil
	}
	now := ss.now()
	if now.Sub(s.last) > ss.idle {
		ss.deleteLocked(s)
		return nil
	}
	s.last = now
	return s
}

func (ss *sessions) remove(id string) {
	ss.mu.Lock()
	if s := ss.m[id]; s != nil {
		ss.deleteLocked(s)
	}
	ss.mu.Unlock()
}

func (ss *sessions) setFlash(s *session, msg string, isErr bool) {
	ss.mu.Lock()
	s.flash, s.flashErr = msg, isErr
	ss.mu.Unlock()
}

func (ss *sessions) takeFlash(s *session) (string, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	m, e := s.flash, s.flashErr
	s.flash, s.flashErr = "", false
	return m, e
}

// current is the request's session, or nil.
func (d *Dashboard) current(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil
	}
	return d.sessions.get(c.Value)
}

func (d *Dashboard) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || d.opts.SecureCookie})
}

// checkCSRF compares the form's token with the session's in constant time.
func checkCSRF(r *http.Request, s *session) bool {
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}

// handler is a page handler of a signed-in session.
type handler func(w http.ResponseWriter, r *http.Request, s *session)

// team wraps a team page: a session of a team's key is required (else
// the sign-in page, which comes back here), and a POST must carry the
// session's CSRF token.
func (d *Dashboard) team(h handler) http.HandlerFunc {
	return d.requireSession(false, h)
}

// operator wraps an operator page the same way.
func (d *Dashboard) operator(h handler) http.HandlerFunc {
	return d.requireSession(true, h)
}

func (d *Dashboard) requireSession(operator bool, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := d.current(r)
		if s == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/signin?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			d.render(w, r, http.StatusUnauthorized, "error", nil, page{Title: "Signed out", Message: "Your session has ended. Sign in again."})
			return
		}
		if s.operator != operator {
			d.render(w, r, http.StatusNotFound, "error", s, page{Title: "Not found", Message: "There is no such page for this sign-in."})
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if !checkCSRF(r, s) {
				d.render(w, r, http.StatusForbidden, "error", s, page{Title: "Refused", Message: "This form is out of date or was not sent by this dashboard. Go back, reload the page and try again."})
				return
			}
		}
		// Every signed-in answer holds tenant data or a secret: no cache
		// (the browser's included) may keep it.
		w.Header().Set("Cache-Control", "no-store")
		if r.Method == http.MethodGet {
			r = d.withReveal(r, s)
		}
		h(w, r, s)
	}
}

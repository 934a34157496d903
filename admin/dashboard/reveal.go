package dashboard

import (
	"context"
	"net/http"
)

// A secret made by a form (an API key, a mailbox password, a webhook
// secret) is shown once, by post/redirect/get: the post stores it in the
// server-side session and answers 303; the next GET of any dashboard page
// takes it out of the session, and the page it was made for shows it.
// So reloading the page that shows it is a GET that neither shows it
// again nor re-posts the form (which would make another key), and the
// secret never sits in the browser's history or cache (every signed-in
// page is Cache-Control: no-store).

// reveal is a secret waiting for the page it was made for.
type reveal struct {
	path  string // the dashboard page that shows it
	value any    // *apiKey, *mailboxPassword or *hook, with the secret
}

type revealKey struct{}

// setReveal holds v for the page at path; it replaces any secret not
// yet shown (a second create before the first page loaded: the API
// answered both, only the last is shown).
func (ss *sessions) setReveal(s *session, path string, v any) {
	ss.mu.Lock()
	s.reveal = &reveal{path: path, value: v}
	ss.mu.Unlock()
}

// takeReveal removes the session's waiting secret and returns it.
func (ss *sessions) takeReveal(s *session) *reveal {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	rv := s.reveal
	s.reveal = nil
	return rv
}

// withReveal moves the session's waiting secret into the GET request's
// context: whichever page this GET is, the session no longer holds it.
func (d *Dashboard) withReveal(r *http.Request, s *session) *http.Request {
	rv := d.sessions.takeReveal(s)
	if rv == nil {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), revealKey{}, rv))
}

// revealed is the secret this GET carries for the page at path, or nil.
func revealed(r *http.Request, path string) any {
	rv, _ := r.Context().Value(revealKey{}).(*reveal)
	if rv == nil || rv.path != path {
		return nil
	}
	return rv.value
}

// revealRedirect ends a post that made a secret: held for the page at
// to, then 303 there.
func (d *Dashboard) revealRedirect(w http.ResponseWriter, r *http.Request, s *session, to string, v any) {
	d.sessions.setReveal(s, to, v)
	http.Redirect(w, r, to, http.StatusSeeOther)
}

package dashboard

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/smtpmux/smtpmux/admin"
	"github.com/smtpmux/smtpmux/store"
)

// signinCookie carries the sign-in form's token (double submit): without
// a session there is nothing server-side to tie the form to, and a
// forged sign-in would put the victim in the attacker's team.
const signinCookie = "smx_signin"

func (d *Dashboard) home(w http.ResponseWriter, r *http.Request) {
	s := d.current(r)
	switch {
	case s == nil:
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
	case s.operator:
		http.Redirect(w, r, "/operator", http.StatusSeeOther)
	default:
		http.Redirect(w, r, "/accounts", http.StatusSeeOther)
	}
}

func (d *Dashboard) signInPage(w http.ResponseWriter, r *http.Request) {
	d.signInForm(w, r, http.StatusOK, "")
}

func (d *Dashboard) signInForm(w http.ResponseWriter, r *http.Request, status int, msg string) {
	tok := randomToken()
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: tok, Path: "/signin", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || d.opts.SecureCookie})
	d.render(w, r, status, "signin", nil, page{Title: "Sign in", CSRF: tok, Flash: msg, FlashErr: msg != "",
		Next: safeNext(r.FormValue("next"))})
}

// signIn checks the credential as the API would and starts a session
// under a new ID. A key starting smx_ is a team key (a sending key is
// refused, as the Management API refuses it); anything else is tried as
// the operator token.
func (d *Dashboard) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	c, err := r.Cookie(signinCookie)
	form := r.PostFormValue("csrf")
	if err != nil || form == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(form)) != 1 {
		d.signInForm(w, r, http.StatusForbidden, "The sign-in form expired. Try again.")
		return
	}
	secret := strings.TrimSpace(r.PostFormValue("key"))
	if secret == "" {
		d.signInForm(w, r, http.StatusUnauthorized, "Enter a root key or the operator token.")
		return
	}
	var key *store.APIKey
	operator := !strings.HasPrefix(secret, "smx_")
	if operator {
		err = d.opts.Auth.SignInOperator(r, secret)
	} else {
		key, err = d.opts.Auth.SignInRoot(r, secret)
	}
	if err != nil {
		status, msg := http.StatusUnauthorized, "That key cannot sign in."
		var se *admin.SignInError
		if errors.As(err, &se) {
			status, msg = se.Status, "That key cannot sign in: "+se.Message
		}
		d.signInForm(w, r, status, msg)
		return
	}
	// A new session, never the one the browser came with (fixation).
	if old, err := r.Cookie(cookieName); err == nil {
		d.sessions.remove(old.Value)
	}
	s := d.sessions.create(secret, key, operator)
	d.setCookie(w, r, s.id, 0)
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Path: "/signin", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	next := safeNext(r.PostFormValue("next"))
	if next == "" || operator != strings.HasPrefix(next, "/operator") {
		next = "/"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// safeNext keeps a return path only when it is a path on this site: one
// leading slash, no scheme, no host, no backslash (browsers read "/\evil"
// as "//evil"), so sign-in cannot be made an open redirect.
func safeNext(next string) string {
	if len(next) < 2 || next[0] != '/' || next[1] == '/' || next[1] == '\\' ||
		strings.ContainsAny(next, "\\\r\n\t") || strings.HasPrefix(next, "/signin") || strings.HasPrefix(next, "/signout") {
		return ""
	}
	return next
}

func (d *Dashboard) signOut(w http.ResponseWriter, r *http.Request) {
	s := d.current(r)
	if s != nil {
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if !checkCSRF(r, s) {
			d.render(w, r, http.StatusForbidden, "error", s, page{Title: "Refused", Message: "This form is out of date. Reload the page and try again."})
			return
		}
		d.sessions.remove(s.id)
	}
	d.setCookie(w, r, "", -1)
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

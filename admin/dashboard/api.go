package dashboard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// apiAnswer is one Management API answer (SPEC §3 envelope).
type apiAnswer struct {
	Status     int
	OK         bool            `json:"ok"`
	Data       json.RawMessage `json:"data"`
	Pagination struct {
		HasMore    bool   `json:"has_more"`
		NextCursor string `json:"next_cursor"`
	} `json:"pagination"`
	Error *apiError `json:"error"`
}

// apiError is the API's error object, shown to the user as it is.
type apiError struct {
	Code    string       `json:"code"`
	Message string       `json:"message"`
	Param   string       `json:"param"`
	Errors  []fieldError `json:"errors"`
}

type fieldError struct {
	Field   string `json:"field"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error is the API's message followed by each field's, so that a page
// without a place for a field's message still says what is wrong.
func (e *apiError) Error() string {
	if len(e.Errors) == 0 {
		return e.Message
	}
	msgs := make([]string, 0, len(e.Errors))
	for _, f := range e.Errors {
		msgs = append(msgs, f.Message)
	}
	return e.Message + " — " + strings.Join(msgs, "; ")
}

// fieldErrors maps field name to message, for showing next to inputs.
func (e *apiError) fieldErrors() map[string]string {
	m := map[string]string{}
	if e == nil {
		return m
	}
	for _, f := range e.Errors {
		m[f.Field] = f.Message
	}
	if e.Param != "" {
		m[e.Param] = e.Message
	}
	return m
}

// recorder is an in-memory http.ResponseWriter for in-process API calls.
type recorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.h }
func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(b)
}

// call makes one Management API request in process, as the session's
// credential and from the browser's address (so per-address limits and
// the access log see the real client). body, when not nil, is sent as
// JSON.
func (d *Dashboard) call(r *http.Request, s *session, method, path string, q url.Values, body any) *apiAnswer {
	return d.callPath(r, s, method, "/api/v1"+path, q, body)
}

// callPath is call for a path outside /api/v1 (/readyz).
func (d *Dashboard) callPath(r *http.Request, s *session, method, u string, q url.Values, body any) *apiAnswer {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return &apiAnswer{Status: 500, Error: &apiError{Code: "internal_error", Message: "could not encode the form"}}
		}
		rd = bytes.NewReader(b)
	}
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(r.Context(), method, u, rd)
	if err != nil {
		return &apiAnswer{Status: 500, Error: &apiError{Code: "internal_error", Message: err.Error()}}
	}
	req.RemoteAddr = r.RemoteAddr
	req.Host = r.Host
	req.RequestURI = u
	req.Header.Set("Authorization", "Bearer "+s.secret)
	req.Header.Set("User-Agent", "smtpmux-dashboard")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := &recorder{h: http.Header{}}
	d.opts.API.ServeHTTP(rec, req)
	a := &apiAnswer{}
	if err := json.Unmarshal(rec.body.Bytes(), a); err != nil {
		a.Error = &apiError{Code: "internal_error", Message: fmt.Sprintf("unexpected answer from the API (HTTP %d)", rec.status)}
	}
	a.Status = rec.status
	if !a.OK && a.Error == nil {
		a.Error = &apiError{Code: "internal_error", Message: fmt.Sprintf("the API answered HTTP %d", rec.status)}
	}
	if a.OK {
		a.Error = nil
	}
	return a
}

// into decodes a successful answer's data into v.
func (a *apiAnswer) into(v any) error {
	if !a.OK {
		return a.Error
	}
	return json.Unmarshal(a.Data, v)
}

// get is call for a GET that decodes into v; the error is the API's.
func (d *Dashboard) get(r *http.Request, s *session, path string, q url.Values, v any) (*apiAnswer, error) {
	a := d.call(r, s, http.MethodGet, path, q, nil)
	if err := a.into(v); err != nil {
		return a, err
	}
	return a, nil
}

// signedOut reports an answer that says the session's credential no
// longer works (revoked key, changed operator token): the session ends.
func (d *Dashboard) signedOut(w http.ResponseWriter, r *http.Request, s *session, a *apiAnswer) bool {
	if a == nil || a.Status != http.StatusUnauthorized {
		return false
	}
	d.sessions.remove(s.id)
	d.setCookie(w, r, "", -1)
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
	return true
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// pathEscape escapes one ID for use in an API path. IDs the API accepts
// have no characters that need it; anything else is the API's 404.
func pathEscape(s string) string { return url.PathEscape(strings.TrimSpace(s)) }

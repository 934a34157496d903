package admin

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Error codes of SPEC §3. They are the public contract: clients branch on
// them, so they never change spelling.
const (
	codeInvalidParameter   = "invalid_parameter"
	codeMissingParameter   = "missing_parameter"
	codeAuthRequired       = "authentication_required"
	codeForbidden          = "insufficient_permissions"
	codeNotFound           = "not_found"
	codeMethodNotAllowed   = "method_not_allowed"
	codeConflict           = "conflict"
	codeLimitExceeded      = "limit_exceeded"
	codePayloadTooLarge    = "payload_too_large"
	codeValidation         = "validation_error"
	codeRateLimited        = "rate_limit_exceeded"
	codeInternal           = "internal_error"
	codeServiceUnavailable = "service_unavailable"
)

// apiError is an error a handler returns to have it rendered as the error
// envelope. Any other error becomes a generic 500 whose detail only reaches
// the log, so internals never leak to clients.
type apiError struct {
	Status    int          `json:"-"`
	Code      string       `json:"code"`
	Message   string       `json:"message"`
	Retryable bool         `json:"retryable"`
	Param     string       `json:"param,omitempty"`
	Errors    []fieldError `json:"errors,omitempty"`
	// RetryAfter, when set, becomes the Retry-After header (whole seconds).
	RetryAfter time.Duration `json:"-"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// fieldError names one invalid field of a 422 answer.
type fieldError struct {
	Field   string `json:"field"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func errInvalidParam(param, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: codeInvalidParameter, Param: param, Message: fmt.Sprintf(format, args...)}
}

func errAuthRequired(msg string) *apiError {
	return &apiError{Status: http.StatusUnauthorized, Code: codeAuthRequired, Message: msg}
}

func errForbidden(msg string) *apiError {
	return &apiError{Status: http.StatusForbidden, Code: codeForbidden, Message: msg}
}

func errNotFound(what string) *apiError {
	return &apiError{Status: http.StatusNotFound, Code: codeNotFound, Message: what + " not found"}
}

func errConflict(msg string) *apiError {
	return &apiError{Status: http.StatusConflict, Code: codeConflict, Message: msg}
}

func errLimitExceeded(msg string) *apiError {
	return &apiError{Status: http.StatusConflict, Code: codeLimitExceeded, Message: msg}
}

func errTooLarge(limit int64) *apiError {
	return &apiError{Status: http.StatusRequestEntityTooLarge, Code: codePayloadTooLarge,
		Message: fmt.Sprintf("request body exceeds %d bytes", limit)}
}

func errUnavailable(msg string) *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Code: codeServiceUnavailable, Message: msg, Retryable: true}
}

// storageFull is the answer for a write the store's file system refused for
// lack of space (ENOSPC, or EDQUOT for a quota), nil for any other error.
// Nothing was written, and the same request passes once an operator frees
// space, so it is a retryable 503 that says so rather than a generic 500;
// the path and the OS error text stay in the log.
func storageFull(err error) *apiError {
	if !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EDQUOT) {
		return nil
	}
	return &apiError{Status: http.StatusServiceUnavailable, Code: codeServiceUnavailable, Retryable: true,
		RetryAfter: time.Minute, Message: "the server is out of storage space; nothing was changed; retry later"}
}

// errValidation is a 422 naming a single field; use a validator to report
// several at once.
func errValidation(field, code, msg string) error {
	v := &validator{}
	v.add(field, code, msg)
	return v.err()
}

// validator collects field problems so that one 422 lists all of them and
// a client can fix a form in one round trip.
type validator struct{ errs []fieldError }

func (v *validator) add(field, code, msg string) {
	v.errs = append(v.errs, fieldError{Field: field, Code: code, Message: msg})
}

// err returns nil when nothing was added, else the 422 answer.
func (v *validator) err() error {
	if len(v.errs) == 0 {
		return nil
	}
	names := make([]string, 0, len(v.errs))
	for _, e := range v.errs {
		names = append(names, e.Field)
	}
	msg := v.errs[0].Message
	if len(v.errs) > 1 {
		msg = "invalid fields: " + strings.Join(names, ", ")
	}
	return &apiError{Status: http.StatusUnprocessableEntity, Code: codeValidation,
		Message: msg, Param: v.errs[0].Field, Errors: v.errs}
}

// meta is attached to every answer so a client can quote the request ID
// when reporting a problem; the same ID is in the log line.
type meta struct {
	RequestID string `json:"request_id"`
}

// pagination is the list cursor of SPEC §3. NextCursor is null when there
// is no next page, so "if next_cursor" works in every client language.
type pagination struct {
	HasMore    bool    `json:"has_more"`
	NextCursor *string `json:"next_cursor"`
}

type okEnvelope struct {
	OK         bool        `json:"ok"`
	Data       any         `json:"data"`
	Pagination *pagination `json:"pagination,omitempty"`
	Meta       meta        `json:"meta"`
}

type errEnvelope struct {
	OK    bool      `json:"ok"`
	Error *apiError `json:"error"`
	Meta  meta      `json:"meta"`
}

// writeJSON writes v with status. Encoding errors cannot be reported to the
// client any more (the status line is out), so they are ignored here; the
// values written are all plain structs that always encode.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	// Answers may carry a freshly created secret; no cache may keep them.
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeOK(w http.ResponseWriter, reqID string, status int, data any) {
	writeJSON(w, status, okEnvelope{OK: true, Data: data, Meta: meta{RequestID: reqID}})
}

func writeList(w http.ResponseWriter, reqID string, data any, p pagination) {
	writeJSON(w, http.StatusOK, okEnvelope{OK: true, Data: data, Pagination: &p, Meta: meta{RequestID: reqID}})
}

func writeError(w http.ResponseWriter, reqID string, e *apiError) {
	if e.RetryAfter > 0 {
		secs := int((e.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", fmt.Sprint(secs))
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="smtpmux"`)
	}
	writeJSON(w, e.Status, errEnvelope{OK: false, Error: e, Meta: meta{RequestID: reqID}})
}

// rfc3339 renders a timestamp as SPEC §3 wants it: RFC 3339 in UTC.
func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// rfc3339p renders an optional timestamp; unset becomes JSON null.
func rfc3339p(t *time.Time) *string {
	if t == nil || t.IsZero() {
		return nil
	}
	s := rfc3339(*t)
	return &s
}

// nullable turns "" into JSON null, so clients can tell "not set" from a
// value without guessing whether an empty string is meaningful.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Page size bounds of SPEC §3.
const (
	defaultPageSize = 50
	maxPageSize     = 100
)

// page is a parsed list request: at most limit items whose ID sorts after
// the cursor's.
type page struct {
	limit int
	after string
}

// parsePage reads ?limit= and ?cursor=. The cursor is the last ID of the
// previous page, base64url-encoded so clients treat it as opaque and the
// encoding can change without breaking them.
func parsePage(r *http.Request) (page, error) {
	q := r.URL.Query()
	p := page{limit: defaultPageSize}
	if s := q.Get("limit"); s != "" || q.Has("limit") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPageSize {
			return p, errInvalidParam("limit", "limit must be an integer between 1 and %d", maxPageSize)
		}
		p.limit = n
	}
	if c := q.Get("cursor"); c != "" {
		raw, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil || !cursorID(string(raw)) {
			return p, errInvalidParam("cursor", "cursor is not one this API returned")
		}
		p.after = string(raw)
	}
	return p, nil
}

// cursorID accepts what our IDs look like (prefix_ + base32) so that a
// hand-made cursor cannot smuggle arbitrary bytes into comparisons or logs.
func cursorID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// paginate cuts one page out of items, which must be in ID order (store
// lists are: IDs start with a millisecond timestamp and bbolt iterates in
// key order). Keyset pagination instead of offsets keeps pages stable while
// resources are created or deleted between requests.
func paginate[T any](items []T, id func(T) string, p page) ([]T, pagination) {
	start := 0
	if p.after != "" {
		start = len(items)
		for i, it := range items {
			if id(it) > p.after {
				start = i
				break
			}
		}
	}
	rest := items[start:]
	if len(rest) <= p.limit {
		return rest, pagination{}
	}
	out := rest[:p.limit]
	next := base64.RawURLEncoding.EncodeToString([]byte(id(out[len(out)-1])))
	return out, pagination{HasMore: true, NextCursor: &next}
}

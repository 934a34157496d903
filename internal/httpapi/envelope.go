package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/smtpmux/smtpmux/store"
)

// Error codes of SPEC §3. They are the public contract: clients branch on
// them, so they never change spelling.
const (
	CodeInvalidParameter   = "invalid_parameter"
	CodeMissingParameter   = "missing_parameter"
	CodeAuthRequired       = "authentication_required"
	CodeForbidden          = "insufficient_permissions"
	CodeNotFound           = "not_found"
	CodeMethodNotAllowed   = "method_not_allowed"
	CodeConflict           = "conflict"
	CodeLimitExceeded      = "limit_exceeded"
	CodePayloadTooLarge    = "payload_too_large"
	CodeValidation         = "validation_error"
	CodeRateLimited        = "rate_limit_exceeded"
	CodeInternal           = "internal_error"
	CodeServiceUnavailable = "service_unavailable"
)

// Error is an error a handler returns to have it rendered as the error
// envelope. Any other error becomes a generic 500 whose detail only reaches
// the log, so internals never leak to clients.
type Error struct {
	Status    int          `json:"-"`
	Code      string       `json:"code"`
	Message   string       `json:"message"`
	Retryable bool         `json:"retryable"`
	Param     string       `json:"param,omitempty"`
	Errors    []FieldError `json:"errors,omitempty"`
	// RetryAfter, when set, becomes the Retry-After header (whole seconds).
	RetryAfter time.Duration `json:"-"`
}

// Error implements error.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// FieldError names one invalid field of a 422 answer.
type FieldError struct {
	Field   string `json:"field"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Bounds of what an error answer echoes. Field names and messages may
// quote the client's own input (an unknown member's name, a custom
// header's), which can be as long as the body: echoed whole, a 25 MB send
// would answer 50 MB, and that answer is what the Idempotency-Key layer
// keeps for 24 h (in etcd, a record past its request limit is refused and
// retried from memory for two minutes). Real names and messages are far
// shorter.
const (
	maxEchoedName    = 200
	maxEchoedMessage = 1000
)

// MarshalJSON renders e with its echoes bounded (maxEchoedName,
// maxEchoedMessage), wherever it is written: an error answer, or an item
// of a batch answer.
func (e Error) MarshalJSON() ([]byte, error) {
	type plain Error
	e.Message, e.Param = clip(e.Message, maxEchoedMessage), clip(e.Param, maxEchoedName)
	return json.Marshal(plain(e))
}

// MarshalJSON renders f with its echoes bounded, as Error does.
func (f FieldError) MarshalJSON() ([]byte, error) {
	type plain FieldError
	f.Field, f.Message = clip(f.Field, maxEchoedName), clip(f.Message, maxEchoedMessage)
	return json.Marshal(plain(f))
}

// clip cuts s to at most n bytes at a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// ErrInvalidParam is a 400 naming the parameter (a member or header) at fault.
func ErrInvalidParam(param, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidParameter, Param: param, Message: fmt.Sprintf(format, args...)}
}

// ErrAuthRequired is a 401: no credential, or one that is not valid.
func ErrAuthRequired(msg string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: CodeAuthRequired, Message: msg}
}

// ErrForbidden is a 403: the credential may not do this.
func ErrForbidden(msg string) *Error {
	return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: msg}
}

// ErrNotFound is a 404 for what ("provider", …).
func ErrNotFound(what string) *Error {
	return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: what + " not found"}
}

// ErrConflict is a 409.
func ErrConflict(msg string) *Error {
	return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: msg}
}

// ErrLimitExceeded is a 409 for a count limit (providers per team, …).
func ErrLimitExceeded(msg string) *Error {
	return &Error{Status: http.StatusConflict, Code: CodeLimitExceeded, Message: msg}
}

// ErrTooLarge is a 413 for a body over limit bytes.
func ErrTooLarge(limit int64) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodePayloadTooLarge,
		Message: fmt.Sprintf("request body exceeds %d bytes", limit)}
}

// ErrUnavailable is a retryable 503.
func ErrUnavailable(msg string) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: CodeServiceUnavailable, Message: msg, Retryable: true}
}

// StorageFull is the answer for a write the store's file system refused for
// lack of space (ENOSPC, or EDQUOT for a quota), nil for any other error.
// Nothing was written, and the same request passes once an operator frees
// space, so it is a retryable 503 that says so rather than a generic 500;
// the path and the OS error text stay in the log.
func StorageFull(err error) *Error {
	if !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EDQUOT) {
		return nil
	}
	return &Error{Status: http.StatusServiceUnavailable, Code: CodeServiceUnavailable, Retryable: true,
		RetryAfter: time.Minute, Message: "the server is out of storage space; nothing was changed; retry later"}
}

// ErrValidation is a 422 naming a single field; use a Validator to report
// several at once.
func ErrValidation(field, code, msg string) error {
	v := &Validator{}
	v.Add(field, code, msg)
	return v.Err()
}

// Validator collects field problems so that one 422 lists all of them and
// a client can fix a form in one round trip.
type Validator struct{ errs []FieldError }

// Add records one problem of field.
func (v *Validator) Add(field, code, msg string) {
	v.errs = append(v.errs, FieldError{Field: field, Code: code, Message: msg})
}

// Len is how many problems have been added so far.
func (v *Validator) Len() int { return len(v.errs) }

// Has reports whether a problem was added for field.
func (v *Validator) Has(field string) bool {
	for _, e := range v.errs {
		if e.Field == field {
			return true
		}
	}
	return false
}

// Clone returns a validator holding the problems v holds so far.
func (v *Validator) Clone() *Validator {
	return &Validator{errs: slices.Clone(v.errs)}
}

// Err returns nil when nothing was added, else the 422 answer.
func (v *Validator) Err() error {
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
	return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation,
		Message: msg, Param: v.errs[0].Field, Errors: v.errs}
}

// meta is attached to every answer so a client can quote the request ID
// when reporting a problem; the same ID is in the log line.
type meta struct {
	RequestID string `json:"request_id"`
}

// Pagination is the list cursor of SPEC §3. NextCursor is null when there
// is no next page, so "if next_cursor" works in every client language.
type Pagination struct {
	HasMore    bool    `json:"has_more"`
	NextCursor *string `json:"next_cursor"`
}

type okEnvelope struct {
	OK         bool        `json:"ok"`
	Data       any         `json:"data"`
	Pagination *Pagination `json:"pagination,omitempty"`
	Meta       meta        `json:"meta"`
}

type errEnvelope struct {
	OK    bool   `json:"ok"`
	Error *Error `json:"error"`
	Meta  meta   `json:"meta"`
}

// WriteJSON writes v with status. Encoding errors cannot be reported to the
// client any more (the status line is out), so they are ignored here; the
// values written are all plain structs that always encode.
func WriteJSON(w http.ResponseWriter, status int, v any) {
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

// WriteOK writes data in the success envelope.
func WriteOK(w http.ResponseWriter, reqID string, status int, data any) {
	WriteJSON(w, status, okEnvelope{OK: true, Data: data, Meta: meta{RequestID: reqID}})
}

// WriteList writes a list page in the success envelope, with its pagination.
func WriteList(w http.ResponseWriter, reqID string, data any, p Pagination) {
	WriteJSON(w, http.StatusOK, okEnvelope{OK: true, Data: data, Pagination: &p, Meta: meta{RequestID: reqID}})
}

// WriteError writes e in the error envelope, with Retry-After and, for a
// 401, WWW-Authenticate.
func WriteError(w http.ResponseWriter, reqID string, e *Error) {
	if e.RetryAfter > 0 {
		secs := int((e.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", fmt.Sprint(secs))
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="smtpmux"`)
	}
	WriteJSON(w, e.Status, errEnvelope{OK: false, Error: e, Meta: meta{RequestID: reqID}})
}

// CodeClusterUnavailable is a management write refused because the
// cluster's state of record (etcd) cannot be reached.
const CodeClusterUnavailable = "cluster_unavailable"

// ClusterUnavailable turns store.ErrUnavailable into its answer: 503 with
// Retry-After. Nothing was written; reads and mail keep working from the
// node's last view.
func ClusterUnavailable(err error) *Error {
	if !errors.Is(err, store.ErrUnavailable) {
		return nil
	}
	return &Error{Status: http.StatusServiceUnavailable, Code: CodeClusterUnavailable, Retryable: true,
		RetryAfter: 5 * time.Second, Message: "the cluster's configuration store cannot be reached; nothing was changed; retry later"}
}

package admin

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"time"

	"github.com/smtpmux/smtpmux/internal/httpapi"
)

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
			return p, httpapi.ErrInvalidParam("limit", "limit must be an integer between 1 and %d", maxPageSize)
		}
		p.limit = n
	}
	if c := q.Get("cursor"); c != "" {
		raw, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil || !cursorID(string(raw)) {
			return p, httpapi.ErrInvalidParam("cursor", "cursor is not one this API returned")
		}
		p.after = string(raw)
	}
	return p, nil
}

// cursorID accepts what our IDs look like (prefix_ + base32, and for a
// message accepted in cluster mode '-' and the node ID) so that a
// hand-made cursor cannot smuggle arbitrary bytes into comparisons or logs.
func cursorID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// paginate cuts one page out of items, which must be in ID order (store
// lists are: IDs start with a millisecond timestamp and bbolt iterates in
// key order). Keyset pagination instead of offsets keeps pages stable while
// resources are created or deleted between requests.
func paginate[T any](items []T, id func(T) string, p page) ([]T, httpapi.Pagination) {
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
		return rest, httpapi.Pagination{}
	}
	out := rest[:p.limit]
	next := base64.RawURLEncoding.EncodeToString([]byte(id(out[len(out)-1])))
	return out, httpapi.Pagination{HasMore: true, NextCursor: &next}
}

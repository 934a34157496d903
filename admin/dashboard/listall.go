package dashboard

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// maxListPages bounds listAll: 100 pages of 100 is far past what a team
// holds of keys or mailboxes, and keeps one page view's work bounded.
const maxListPages = 100

// listAll reads every page of a list route, following the API's cursor.
// What it read is returned even with an error (the API's, or that the
// list was longer than maxListPages pages).
func listAll[T any](d *Dashboard, r *http.Request, s *session, path string) ([]T, error) {
	var out []T
	q := url.Values{"limit": {"100"}}
	for range maxListPages {
		a := d.call(r, s, http.MethodGet, path, q, nil)
		if !a.OK {
			return out, a.Error
		}
		var page []T
		if err := json.Unmarshal(a.Data, &page); err != nil {
			return out, err
		}
		out = append(out, page...)
		if !a.Pagination.HasMore || a.Pagination.NextCursor == "" {
			return out, nil
		}
		q.Set("cursor", a.Pagination.NextCursor)
	}
	return out, fmt.Errorf("only the first %d were checked", len(out))
}

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

// listPage reads the page of a list route (50 at a time) that the
// request's cursor names into dst: the page views of keys, mailboxes,
// domains and accounts. It returns the cursor of the next page ("" on the
// last) and the error to show; done means the session ended and the
// answer has been written (signedOut).
func (d *Dashboard) listPage(w http.ResponseWriter, r *http.Request, s *session, path string, dst any) (next string, errText string, done bool) {
	q := url.Values{"limit": {"50"}}
	if c := r.URL.Query().Get("cursor"); c != "" {
		q.Set("cursor", c)
	}
	a, err := d.get(r, s, path, q, dst)
	if d.signedOut(w, r, s, a) {
		return "", "", true
	}
	if err != nil {
		errText = err.Error()
	}
	if a.Pagination.HasMore {
		next = a.Pagination.NextCursor
	}
	return next, errText, false
}

// groupsAndNames is the team's delivery groups and their names by ID, for
// pages that show which group a key or mailbox sends through.
func (d *Dashboard) groupsAndNames(r *http.Request, s *session) ([]group, map[string]string) {
	gs := d.listGroups(r, s)
	names := make(map[string]string, len(gs))
	for _, g := range gs {
		names[g.ID] = g.Name
	}
	return gs, names
}

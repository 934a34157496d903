package admin

import (
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// emailLogItem is one line of GET /emails/logs: enough to find a message;
// GET /emails/{id} has every attempt and routing explanation.
type emailLogItem struct {
	ID            string        `json:"id"`
	Status        state.Message `json:"status"`
	Reason        *string       `json:"reason"`
	Source        string        `json:"source"`
	From          string        `json:"from"`
	To            []string      `json:"to"`
	Subject       *string       `json:"subject"`
	ProviderID    *string       `json:"provider_id"` // of the latest attempt
	Attempts      int           `json:"attempts"`
	SentFromEmail *string       `json:"sent_from_email"`
	Size          int64         `json:"size"`
	CreatedAt     string        `json:"created_at"`
	UpdatedAt     string        `json:"updated_at"`
}

func emailLogView(m *store.Message) emailLogItem {
	it := emailLogItem{ID: m.ID, Status: m.Status, Reason: nullable(m.Reason), Source: m.Source, From: m.From,
		To: make([]string, 0, len(m.Recipients)), Subject: nullable(m.Subject), Attempts: len(m.Attempts),
		SentFromEmail: nullable(m.SentFromEmail), Size: m.Size,
		CreatedAt: rfc3339(m.CreatedAt), UpdatedAt: rfc3339(m.UpdatedAt)}
	for _, r := range m.Recipients {
		it.To = append(it.To, r.Address)
	}
	if n := len(m.Attempts); n > 0 {
		it.ProviderID = nullable(m.Attempts[n-1].ProviderID)
	}
	return it
}

// messageStatuses are the public statuses (SPEC §4).
var messageStatuses = state.MessageStatuses()

// logFilter is a parsed set of message-log filters.
type logFilter struct {
	statuses   []state.Message
	providerID string
	from, to   time.Time // [from, to); zero is open
	search     string    // lowercased
}

// parseLogFilter reads ?status= (one status, or several comma-separated),
// ?provider_id=, ?from_date= / ?to_date= (a date means that whole UTC day;
// a timestamp is RFC 3339 and to_date includes it) and ?search=.
func parseLogFilter(r *http.Request) (logFilter, error) {
	q := r.URL.Query()
	var f logFilter
	if s := q.Get("status"); s != "" {
		for st := range strings.SplitSeq(s, ",") {
			st = strings.TrimSpace(st)
			if !containsStr(messageStatuses, state.Message(st)) {
				return f, httpapi.ErrInvalidParam("status", "status must be pending, sent, failed, rejected or suppressed (or several, comma-separated)")
			}
			// Once each: every listed status is a walk of the team's log,
			// so a repeated one would multiply the work for nothing.
			if !containsStr(f.statuses, state.Message(st)) {
				f.statuses = append(f.statuses, state.Message(st))
			}
		}
	}
	if p := q.Get("provider_id"); p != "" {
		if !store.ValidID(store.PrefixProvider, p) {
			return f, httpapi.ErrInvalidParam("provider_id", "provider_id must be a provider ID (dprov_…)")
		}
		f.providerID = p
	}
	var err error
	if f.from, err = parseDateBound(q.Get("from_date"), "from_date", false); err != nil {
		return f, err
	}
	if f.to, err = parseDateBound(q.Get("to_date"), "to_date", true); err != nil {
		return f, err
	}
	if !f.from.IsZero() && !f.to.IsZero() && !f.from.Before(f.to) {
		return f, httpapi.ErrInvalidParam("to_date", "to_date must not be before from_date")
	}
	if s := strings.TrimSpace(q.Get("search")); s != "" {
		if len(s) > 256 {
			return f, httpapi.ErrInvalidParam("search", "search must be at most 256 characters")
		}
		f.search = strings.ToLower(s)
	}
	return f, nil
}

// parseDateBound parses one end of a window. A date-only value stands for
// the whole UTC day: as from_date its start, as to_date the start of the
// next day (the window is half-open). A timestamp as to_date is inclusive.
func parseDateBound(s, name string, end bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.Parse(time.DateOnly, s); err == nil {
		if end {
			d = d.AddDate(0, 0, 1)
		}
		return d.UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, httpapi.ErrInvalidParam(name, "%s must be a date (2026-03-01) or an RFC 3339 timestamp (2026-03-01T12:00:00Z)", name)
	}
	if end {
		t = t.Add(time.Nanosecond)
	}
	return t.UTC(), nil
}

// match applies the filters other than the window (the scan applies it).
func (f *logFilter) match(m *store.Message) bool {
	if len(f.statuses) > 0 && !containsStr(f.statuses, m.Status) {
		return false
	}
	if f.providerID != "" && !usedProvider(m, f.providerID) {
		return false
	}
	if f.search != "" {
		hay := []string{m.ID, m.From, m.SentFromEmail, m.Subject}
		for _, r := range m.Recipients {
			hay = append(hay, r.Address)
		}
		found := false
		for _, h := range hay {
			if strings.Contains(strings.ToLower(h), f.search) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// usedProvider reports whether any attempt or recipient result of m names
// the provider (the rule the metrics counters use too).
func usedProvider(m *store.Message, id string) bool { return m.UsedProvider(id) }

// emailLogs is GET /emails/logs: the team's messages, newest first, with
// cursor pagination (the cursor is the last message ID of the page, so a
// page is stable while new mail arrives). In cluster mode the page merges
// every node's (fanout.go, mergeLogPages).
func (s *Server) emailLogs(c *call) error {
	pg, err := parsePage(c.r)
	if err != nil {
		return err
	}
	f, err := parseLogFilter(c.r)
	if err != nil {
		return err
	}
	// Cluster mode: the other nodes' pages of the same request, merged
	// (fanout.go); nil single node.
	fo := s.fanOut(c, c.r.URL.Query())
	page, cursor, err := s.logPage(c.team(), f, pg)
	if err != nil {
		return err
	}
	out := make([]emailLogItem, 0, len(page))
	for _, m := range page {
		out = append(out, emailLogView(m))
	}
	if fo != nil {
		bodies, err := fo.wait()
		if err != nil {
			return err
		}
		parts := []logPart{{items: out, next: cursor}}
		for _, b := range bodies {
			p, err := nodeLogPart(b)
			if err != nil {
				return s.errNodeAnswer(c, err)
			}
			parts = append(parts, p)
		}
		out, cursor = mergeLogPages(parts, pg.limit)
	}
	var pag httpapi.Pagination
	if cursor != "" {
		next := base64.RawURLEncoding.EncodeToString([]byte(cursor))
		pag = httpapi.Pagination{HasMore: true, NextCursor: &next}
	}
	c.list(out, pag)
	return nil
}

// searchScanMax bounds how many of a team's messages one page of a
// ?search= looks at (per index walked). There is no text index: a search
// that matches little would otherwise read the team's whole history for
// one answer (2.2 s at 100,000 messages, a minute at 1,000,000; 4,000
// records cost about 20–50 ms on a busy 2-core machine). A page
// that reaches the bound ends early, with fewer items (possibly none),
// has_more and a cursor that continues below what was looked at. A
// variable, not a constant, so tests can lower it.
var searchScanMax = 4_000

// logPage reads one page of the log: the limit newest messages matching
// f below the cursor, and the cursor of the next page ("" when none). A provider filter walks
// the team's index of that provider's messages, a status filter the index
// of each status asked for (each gives its newest limit+1 matches, merged
// by ID: the newest limit+1 of the union are among them), and otherwise
// the team's whole index; a search skips records whose stored form cannot
// match before decoding them (store.LogWalk.Text), and f.match decides.
func (s *Server) logPage(teamID string, f logFilter, pg page) ([]*store.Message, string, error) {
	var found []*store.Message
	seen := map[string]bool{}
	// resume is the highest point one of the walks stopped at — at the
	// search bound, or at its limit+1-th match — so every index walked
	// was looked at down to it: the page may hold only what lies at or
	// above it, and the next page starts below it.
	resume := ""
	collect := func(walk func(fn func(*store.Message) bool) (string, error)) error {
		n := 0
		r, err := walk(func(m *store.Message) bool {
			defer func() {
				if n > pg.limit && m.ID > resume {
					resume = m.ID
				}
			}()
			if !f.match(m) {
				return true
			}
			if !seen[m.ID] { // a status may change between two walks
				seen[m.ID] = true
				found = append(found, m)
			}
			n++
			return n <= pg.limit
		})
		if r > resume {
			resume = r
		}
		return err
	}
	w := store.LogWalk{TeamID: teamID, Text: f.search, Before: pg.after, From: f.from, To: f.to}
	if f.search != "" {
		w.MaxScan = searchScanMax
	}
	walk := func(fn func(*store.Message) bool) (string, error) { return s.st.WalkLogBounded(w, fn) }
	var err error
	switch {
	case f.providerID != "":
		w.ProviderID = f.providerID
		err = collect(walk)
	case len(f.statuses) > 0:
		for _, st := range f.statuses {
			w.Status = string(st)
			if err = collect(walk); err != nil {
				break
			}
		}
	default:
		err = collect(walk)
	}
	if err != nil {
		return nil, "", err
	}
	slices.SortFunc(found, func(a, b *store.Message) int { return strings.Compare(b.ID, a.ID) })
	if resume != "" {
		// A walk that went deeper found messages another walk has not
		// looked at yet: they come again on the next page, in order.
		found = slices.DeleteFunc(found, func(m *store.Message) bool { return m.ID < resume })
	}
	if len(found) > pg.limit {
		return found[:pg.limit], found[pg.limit-1].ID, nil
	}
	return found, resume, nil
}

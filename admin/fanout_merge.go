package admin

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
)

// The merges of a fan-out (fanout.go): pure functions of the nodes' parts.

// logPart is one node's page of the log: its items, newest (highest ID)
// first, and where its next page would start ("" when it has no more).
type logPart struct {
	items []emailLogItem
	next  string
}

// mergeLogPages makes one page of at most limit items out of the nodes'
// pages of the same request, and the cursor of the next page.
//
// The cursor stays the single-node one, the last message ID: message IDs
// begin with their millisecond time and end with the node's ID, so they
// are unique and totally ordered across nodes, and "every message below
// this ID" means the same on every node. What must hold is that the page
// leaves nothing out above its cursor: a node's page holds every match
// from the request's cursor down to its own next cursor (which may stop
// early, at a search bound), so the merge keeps only items at or above
// the highest of those (the deepest point every node was read to), and
// takes the limit newest of them. Whatever it leaves out lies below the
// cursor it returns, and comes on a later page: exactly once.
func mergeLogPages(parts []logPart, limit int) ([]emailLogItem, string) {
	floor := ""             // items below it were not looked for on every node
	all := []emailLogItem{} // an empty page is [], not null
	for _, p := range parts {
		if p.next > floor {
			floor = p.next
		}
		all = append(all, p.items...)
	}
	if floor != "" {
		all = slices.DeleteFunc(all, func(it emailLogItem) bool { return it.ID < floor })
	}
	slices.SortFunc(all, func(a, b emailLogItem) int { return strings.Compare(b.ID, a.ID) })
	// A message cannot be on two nodes, but a node's own walks may list
	// it twice if its status changed in between: once is enough.
	all = slices.CompactFunc(all, func(a, b emailLogItem) bool { return a.ID == b.ID })
	if len(all) > limit {
		return all[:limit], all[limit-1].ID
	}
	return all, floor
}

// nodeLogPart decodes a node's answer to GET /emails/logs.
func nodeLogPart(body []byte) (logPart, error) {
	var p logPart
	pag, err := nodeData(body, &p.items)
	if err != nil {
		return p, err
	}
	if pag != nil && pag.HasMore {
		if pag.NextCursor == nil {
			return p, fmt.Errorf("has_more without next_cursor")
		}
		raw, err := base64.RawURLEncoding.DecodeString(*pag.NextCursor)
		if err != nil || !cursorID(string(raw)) {
			return p, fmt.Errorf("next_cursor %q is not one of ours", *pag.NextCursor)
		}
		p.next = string(raw)
	}
	return p, nil
}

// addMetrics adds a node's metrics report into rep. Both were asked for
// the same window (the asking node fixes its end), so their buckets must
// match one for one; a report that does not is refused, not guessed at.
func addMetrics(rep *metricsReport, part metricsReport) error {
	if part.Interval != rep.Interval || part.From != rep.From || part.To != rep.To || len(part.Series) != len(rep.Series) {
		return fmt.Errorf("metrics window %s %s–%s (%d buckets), want %s %s–%s (%d)",
			part.Interval, part.From, part.To, len(part.Series), rep.Interval, rep.From, rep.To, len(rep.Series))
	}
	rep.Totals.addCounts(part.Totals)
	for i := range rep.Series {
		if part.Series[i].Start != rep.Series[i].Start {
			return fmt.Errorf("metrics bucket %d starts %s, want %s", i, part.Series[i].Start, rep.Series[i].Start)
		}
		rep.Series[i].addCounts(part.Series[i].statusCounts)
	}
	return nil
}

// addCounts adds o into c.
func (c *statusCounts) addCounts(o statusCounts) {
	c.Total += o.Total
	c.Pending += o.Pending
	c.Sent += o.Sent
	c.Failed += o.Failed
	c.Rejected += o.Rejected
}

// addUsage adds a node's usage lines into items, by provider. The
// providers are state of record, the same on every node; a line for a
// provider this node does not list (made or deleted in between) has no
// place in this answer and is left out, as countUsage leaves out deleted
// providers.
func addUsage(items []*usageItem, part []*usageItem) {
	byID := make(map[string]*usageItem, len(items))
	for _, it := range items {
		byID[it.ProviderID] = it
	}
	for _, p := range part {
		if p == nil {
			continue
		}
		it := byID[p.ProviderID]
		if it == nil {
			continue
		}
		it.SentToday += p.SentToday
		it.Total7d += p.Total7d
		it.Sent7d += p.Sent7d
		it.Failed7d += p.Failed7d
		it.Rejected7d += p.Rejected7d
		it.Pending7d += p.Pending7d
	}
}

package dashboard

import (
	"net/http"
	"net/url"
	"time"
)

type counts struct {
	Start    string `json:"start"`
	Total    int    `json:"total"`
	Pending  int    `json:"pending"`
	Sent     int    `json:"sent"`
	Failed   int    `json:"failed"`
	Rejected int    `json:"rejected"`
}

type metrics struct {
	Interval string   `json:"interval"`
	Totals   counts   `json:"totals"`
	Series   []counts `json:"series"`
}

type usage struct {
	ProviderID string `json:"provider_id"`
	SentToday  int    `json:"sent_today"`
	Sent7d     int    `json:"sent_7d"`
	Failed7d   int    `json:"failed_7d"`
	Rejected7d int    `json:"rejected_7d"`
	Pending7d  int    `json:"pending_7d"`
	Total7d    int    `json:"total_7d"`
}

// bar is one stacked column of a chart, laid out in SVG user units.
type bar struct {
	X, W         int
	SentY, SentH int
	PendY, PendH int
	FailY, FailH int
	Label, Title string
	ShowLabel    bool
}

// chart is a stacked column chart computed here, drawn by the template
// as plain SVG: no script, no inline style.
type chart struct {
	Title      string
	W, H       int
	Bars       []bar
	Max        int
	Empty      bool
	Sent, Pend int
	Fail       int
}

const chartH = 120

func buildChart(title string, series []counts, labelEvery int, layout string) chart {
	c := chart{Title: title, H: chartH + 20}
	bw := 12
	if len(series) <= 10 {
		bw = 40
	}
	c.W = len(series) * (bw + 4)
	for _, p := range series {
		c.Max = max(c.Max, p.Sent+p.Pending+p.Failed+p.Rejected)
		c.Sent += p.Sent
		c.Pend += p.Pending
		c.Fail += p.Failed + p.Rejected
	}
	c.Empty = c.Max == 0
	scale := func(n int) int {
		if c.Max == 0 {
			return 0
		}
		return n * chartH / c.Max
	}
	for i, p := range series {
		b := bar{X: i * (bw + 4), W: bw}
		y := chartH
		b.SentH = scale(p.Sent)
		y -= b.SentH
		b.SentY = y
		b.PendH = scale(p.Pending)
		y -= b.PendH
		b.PendY = y
		b.FailH = scale(p.Failed + p.Rejected)
		y -= b.FailH
		b.FailY = y
		t, _ := time.Parse(time.RFC3339, p.Start)
		b.Label = t.UTC().Format(layout)
		b.ShowLabel = i%labelEvery == 0
		b.Title = b.Label + ": " + itoa(p.Sent) + " sent, " + itoa(p.Pending) + " pending, " + itoa(p.Failed+p.Rejected) + " failed"
		c.Bars = append(c.Bars, b)
	}
	return c
}

// provBar is one provider's last 7 days as a stacked horizontal bar,
// scaled so the busiest provider spans 240 units.
type provBar struct {
	usage
	SentW, PendW, FailW int
}

func provBars(us []usage) []provBar {
	top := 1
	for _, u := range us {
		top = max(top, u.Sent7d+u.Pending7d+u.Failed7d+u.Rejected7d)
	}
	out := make([]provBar, 0, len(us))
	for _, u := range us {
		out = append(out, provBar{usage: u, SentW: u.Sent7d * 240 / top, PendW: u.Pending7d * 240 / top,
			FailW: (u.Failed7d + u.Rejected7d) * 240 / top})
	}
	return out
}

type overviewData struct {
	Day, Week chart
	Usage     []provBar
	Names     map[string]string
	Troubled  []provider
	Queue     int
	Error     string
	Deliv     *delivReport // the team's bounce and complaint rates
}

// overview: traffic over 24 h and 7 d, per-provider use, queue depth and
// providers in error or pulled by the breaker.
func (d *Dashboard) overview(w http.ResponseWriter, r *http.Request, s *session) {
	var data overviewData
	var day, week metrics
	a, err := d.get(r, s, "/emails/metrics", url.Values{"interval": {"hour"}}, &day)
	if d.signedOut(w, r, s, a) {
		return
	}
	if err != nil {
		data.Error = err.Error()
	}
	from := time.Now().UTC().AddDate(0, 0, -6).Format(time.DateOnly)
	if _, err := d.get(r, s, "/emails/metrics", url.Values{"interval": {"day"}, "from_date": {from}}, &week); err != nil && data.Error == "" {
		data.Error = err.Error()
	}
	data.Day = buildChart("Last 24 hours", day.Series, 3, "15:04")
	data.Week = buildChart("Last 7 days", week.Series, 1, "Jan 2")
	var u struct {
		Providers []usage `json:"providers"`
	}
	d.get(r, s, "/providers/usage", nil, &u)
	data.Usage = provBars(u.Providers)
	var ps []provider
	data.Names = map[string]string{}
	if _, err := d.get(r, s, "/providers", url.Values{"limit": {"100"}}, &ps); err == nil {
		for _, p := range ps {
			data.Names[p.ID] = p.Name
			if p.Status == "error" || p.Health.PulledUntil != nil {
				data.Troubled = append(data.Troubled, p)
			}
		}
	}
	for _, x := range u.Providers {
		data.Queue += x.Pending7d
	}
	data.Deliv = d.deliverability(r, s, "")
	d.render(w, r, http.StatusOK, "overview", s, page{Title: "Overview", Nav: "overview", Data: data})
}

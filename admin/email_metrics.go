package admin

import (
	"net/http"
	"time"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// Metrics windows: the default span and the most buckets one answer has,
// so a request cannot make the server build an unbounded series.
const (
	defaultHourlySpan = 24 * time.Hour
	defaultDailySpan  = 30 * 24 * time.Hour
	maxMetricBuckets  = 31 * 24
)

// statusCounts counts messages by public status.
type statusCounts struct {
	Total    int `json:"total"`
	Pending  int `json:"pending"`
	Sent     int `json:"sent"`
	Failed   int `json:"failed"`
	Rejected int `json:"rejected"`
}

func (c *statusCounts) add(status string, n int) {
	c.Total += n
	switch status {
	case string(state.MessagePending):
		c.Pending += n
	case string(state.MessageSent):
		c.Sent += n
	case string(state.MessageFailed):
		c.Failed += n
	case string(state.MessageRejected):
		c.Rejected += n
	}
}

// ceilMinute is t rounded up to a whole minute.
func ceilMinute(t time.Time) time.Time {
	if m := t.Truncate(time.Minute); m.Before(t) {
		return m.Add(time.Minute)
	}
	return t
}

// metricsPoint is one bucket of the series.
type metricsPoint struct {
	Start string `json:"start"`
	statusCounts
}

// metricsReport is GET /emails/metrics.
type metricsReport struct {
	Interval string         `json:"interval"` // hour | day
	From     string         `json:"from"`     // start of the first bucket
	To       string         `json:"to"`       // end of the window (exclusive)
	Totals   statusCounts   `json:"totals"`
	Series   []metricsPoint `json:"series"`
}

// emailMetrics is GET /emails/metrics: messages by current status, in
// total and per hour (?interval=day: per UTC day), by the time they were
// accepted. The window is from_date/to_date as for the log (default: the
// last 24 hours, or 30 days by day); buckets are aligned to whole UTC hours
// or days, and empty buckets are listed, so a chart needs no gap filling.
// ?provider_id= restricts it to messages that provider handled.
func (s *Server) emailMetrics(c *call) error {
	q := c.r.URL.Query()
	step, interval := time.Hour, "hour"
	switch q.Get("interval") {
	case "", "hour":
	case "day":
		step, interval = 24*time.Hour, "day"
	default:
		return httpapi.ErrInvalidParam("interval", `interval must be "hour" or "day"`)
	}
	f, err := parseLogFilter(c.r)
	if err != nil {
		return err
	}
	for _, p := range []string{"search", "status"} {
		if q.Has(p) {
			return httpapi.ErrInvalidParam(p, "metrics take only interval, from_date, to_date and provider_id")
		}
	}
	to := f.to
	if to.IsZero() {
		to = s.now()
	}
	from := f.from
	if from.IsZero() {
		from = to.Add(-defaultHourlySpan)
		if interval == "day" {
			from = to.Add(-defaultDailySpan)
		}
	}
	first := from.Truncate(step) // UTC: Truncate works on absolute time
	n := int((to.Sub(first) + step - 1) / step)
	if n > maxMetricBuckets {
		return httpapi.ErrInvalidParam("from_date", "the window holds %d buckets; at most %d are allowed (use interval=day or a shorter window)", n, maxMetricBuckets)
	}
	// Cluster mode: the other nodes count their own mail over the same
	// window, so its end is fixed here (to_date as a timestamp is
	// inclusive: one nanosecond less gives this very end).
	var fo *fanout
	if s.opts.Cluster != nil {
		fq := c.r.URL.Query()
		if fq.Get("to_date") == "" {
			fq.Set("to_date", to.Add(-time.Nanosecond).Format(time.RFC3339Nano))
		}
		fo = s.fanOut(c, fq)
	}
	rep := metricsReport{Interval: interval, From: rfc3339(first), To: rfc3339(to), Series: make([]metricsPoint, n)}
	for i := range rep.Series {
		rep.Series[i].Start = rfc3339(first.Add(time.Duration(i) * step))
	}
	count := func(created time.Time, status string, k int) {
		rep.Totals.add(status, k)
		if i := int(created.Sub(first) / step); i >= 0 && i < n {
			rep.Series[i].add(status, k)
		}
	}
	// Whole UTC minutes of the window come from the counters kept as mail
	// flows (whole hours from hourly ones: O(hours), whatever the team's
	// volume); a partial minute at either end is counted from the team's
	// messages of that minute, as a counter cannot be split.
	scan := func(from, to time.Time) error {
		if !from.Before(to) {
			return nil
		}
		return s.st.MessagesBetween(c.team(), from, to, func(m *store.Message) bool {
			if f.providerID == "" || m.UsedProvider(f.providerID) {
				count(m.CreatedAt, string(m.Status), 1)
			}
			return true
		})
	}
	inner, innerEnd := ceilMinute(from), to.Truncate(time.Minute)
	if !inner.Before(innerEnd) {
		err = scan(from, to)
	} else if err = scan(from, inner); err == nil {
		if err = s.st.StatusCounts(c.team(), f.providerID, inner, innerEnd, func(hour time.Time, status string, k int64) {
			count(hour, status, int(k))
		}); err == nil {
			err = scan(innerEnd, to)
		}
	}
	if err != nil {
		return err
	}
	if fo != nil {
		bodies, err := fo.wait()
		if err != nil {
			return err
		}
		for _, b := range bodies {
			var part metricsReport
			if _, err := nodeData(b, &part); err != nil {
				return s.errNodeAnswer(c, err)
			}
			if err := addMetrics(&rep, part); err != nil {
				return s.errNodeAnswer(c, err)
			}
		}
	}
	c.ok(http.StatusOK, rep)
	return nil
}

package main

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/smtpmux/smtpmux/admin"
	"github.com/smtpmux/smtpmux/admin/dashboard"
	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/store"
)

// newMetrics builds the registry served at /metrics: the relay's own
// series plus gauges read at scrape time from the store and the scheduler.
func newMetrics() (*prometheus.Registry, *relay.Metrics) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg, relay.NewMetrics(reg)
}

// stateCollector reads queue depth, commit figures and provider state on
// each scrape, so nothing on the mail path has to update them.
type stateCollector struct {
	st    *store.Store
	sched *relay.Scheduler
	reg   *relay.Registry
}

var (
	descQueue     = prometheus.NewDesc("smtpmux_queue_messages", "Messages in the queue by state.", []string{"state"}, nil)
	descCommits   = prometheus.NewDesc("smtpmux_store_commits_total", "Grouped bbolt commits (each one fsync).", nil, nil)
	descCommitSec = prometheus.NewDesc("smtpmux_store_commit_seconds_total", "Time spent in bbolt commits, fsync included.", nil, nil)
	descCommitOps = prometheus.NewDesc("smtpmux_store_committed_writes_total", "Writes carried by the commits (writes per commit is the grouping).", nil, nil)
	descFileBytes = prometheus.NewDesc("smtpmux_store_file_bytes", "Size of the main store file (bodies, queue, the last minutes' history).", nil, nil)
	descFreePages = prometheus.NewDesc("smtpmux_store_free_pages",
		"Pages of the main store file free for reuse (state=free) or freed by commits a reader may still see (state=pending).", []string{"state"}, nil)
	descFreelist = prometheus.NewDesc("smtpmux_store_freelist_bytes", "Bytes of the main file's freelist, which every commit writes.", nil, nil)
	descBreaker  = prometheus.NewDesc("smtpmux_provider_pulled", "1 while the breaker keeps the provider out of rotation.", []string{"provider"}, nil)
	descHeadroom = prometheus.NewDesc("smtpmux_provider_quota_headroom", "What a quota window can still take now.", []string{"provider", "window"}, nil)
	descWebhooks = prometheus.NewDesc("smtpmux_webhook_deliveries_pending", "Webhook deliveries waiting for their next attempt (the backlog).", nil, nil)
	descHistory  = prometheus.NewDesc("smtpmux_history_backlog_messages",
		"Finished messages still in the main store file, waiting for the mover to take them to their day file (a minute after they finish).", nil, nil)
	descHistAge = prometheus.NewDesc("smtpmux_history_backlog_oldest_seconds",
		"How long ago the oldest of them finished (0 when none): past a minute or two, the mover is behind.", nil, nil)
	descConnLimit = prometheus.NewDesc("smtpmux_provider_connection_limit",
		"Connections the provider's pool opens at most now: connections_per_provider less those the upstream turned away.", []string{"provider"}, nil)
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueue, descWebhooks, descHistory, descHistAge, descCommits, descCommitSec, descCommitOps, descFileBytes, descFreePages, descFreelist, descBreaker, descHeadroom, descConnLimit} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	if d, err := c.st.Depths(); err == nil {
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(d.Queued), "queued")
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(d.InFlight), "inflight")
		ch <- prometheus.MustNewConstMetric(descWebhooks, prometheus.GaugeValue, float64(d.WebhookPending))
		age := 0.0
		if !d.HistoryOldest.IsZero() {
			age = max(time.Since(d.HistoryOldest).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(descHistory, prometheus.GaugeValue, float64(d.HistoryBacklog))
		ch <- prometheus.MustNewConstMetric(descHistAge, prometheus.GaugeValue, age)
	}
	n, total, ops := c.st.CommitStats()
	ch <- prometheus.MustNewConstMetric(descCommits, prometheus.CounterValue, float64(n))
	ch <- prometheus.MustNewConstMetric(descCommitSec, prometheus.CounterValue, total.Seconds())
	ch <- prometheus.MustNewConstMetric(descCommitOps, prometheus.CounterValue, float64(ops))
	fs := c.st.FileStats()
	ch <- prometheus.MustNewConstMetric(descFileBytes, prometheus.GaugeValue, float64(fs.SizeBytes))
	ch <- prometheus.MustNewConstMetric(descFreePages, prometheus.GaugeValue, float64(fs.FreePages), "free")
	ch <- prometheus.MustNewConstMetric(descFreePages, prometheus.GaugeValue, float64(fs.PendingPages), "pending")
	ch <- prometheus.MustNewConstMetric(descFreelist, prometheus.GaugeValue, float64(fs.FreelistBytes))
	for id, n := range c.reg.ConnectionLimits() {
		ch <- prometheus.MustNewConstMetric(descConnLimit, prometheus.GaugeValue, float64(n), id)
	}
	gauges, err := c.sched.Gauges()
	if err != nil {
		return
	}
	for id, g := range gauges {
		pulled := 0.0
		if g.Open {
			pulled = 1
		}
		ch <- prometheus.MustNewConstMetric(descBreaker, prometheus.GaugeValue, pulled, id)
		for w, h := range g.Headroom {
			ch <- prometheus.MustNewConstMetric(descHeadroom, prometheus.GaugeValue, float64(h), id, w)
		}
	}
}

// metricsHandler is the Prometheus scrape endpoint.
func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// metricsMux serves only GET /metrics, for the [metrics] listener: the
// series name every team's providers, their breaker state and quota
// headroom, so they never share a listener with the tenants' API (SPEC
// §10). Anything else answers 404.
func metricsMux(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metricsHandler(reg))
	return mux
}

// outerMux serves the API, and /metrics behind the operator token when
// metrics is not nil (no [metrics] listener configured). (The operator
// backup is an API route: admin's operator_backup.go.) Without it, /metrics on this listener is the
// API's JSON 404 like any unknown path.
func outerMux(api *admin.Server, metrics http.Handler, dash *dashboard.Dashboard) http.Handler {
	mux := http.NewServeMux()
	if metrics != nil {
		mux.Handle("GET /metrics", api.OperatorOnly(metrics))
	}
	if dash != nil {
		dash.Mount(mux) // its own paths only; the rest stays the API's
	}
	mux.Handle("/", api)
	return mux
}

package relay

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the relay's Prometheus series. Labels are bounded: provider
// IDs and fixed reason/outcome words, never addresses. A nil *Metrics is
// valid and records nothing (tests).
type Metrics struct {
	sessions     prometheus.Counter
	authFailures prometheus.Counter
	limitedBy    *prometheus.CounterVec
	accepted     prometheus.Counter
	rejected     *prometheus.CounterVec
	attempts     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	feedback     *prometheus.CounterVec
	reports      *prometheus.CounterVec
	failReports  *prometheus.CounterVec
}

// NewMetrics creates the series and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sessions: prometheus.NewCounter(prometheus.CounterOpts{Name: "smtpmux_smtp_sessions_total",
			Help: "SMTP sessions that said EHLO/HELO."}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "smtpmux_smtp_auth_failures_total",
			Help: "Failed credential checks: SMTP AUTH and HTTP Sending API bearer tokens."}),
		limitedBy: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smtpmux_limited_total",
			Help: "Connections, commands and authentication attempts turned away by an abuse limit, by reason."}, []string{"reason"}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Name: "smtpmux_messages_accepted_total",
			Help: "Messages durably accepted (SMTP 250 or HTTP 200)."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smtpmux_messages_refused_total",
			Help: "Transactions refused at acceptance, by reason."}, []string{"reason"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smtpmux_delivery_attempts_total",
			Help: "Delivery attempts by provider and outcome (sent, or the failure class)."}, []string{"provider", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "smtpmux_delivery_attempt_seconds",
			Help:    "Duration of delivery attempts, connect to final reply.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}, []string{"provider"}),
		feedback: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smtpmux_feedback_total",
			Help: "Bounces and complaints recorded against recipients, by provider, type (hard, soft, complaint) and source (smtp, dsn, arf)."},
			[]string{"provider", "type", "source"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smtpmux_bounce_reports_total",
			Help: "Reports the bounce listener accepted, by kind (dsn, arf, text, none) and outcome (recorded: something was recorded; ignored: a delay notice, a report about no recipient of the message, a repeat, or not a report)."},
			[]string{"kind", "outcome"}),
		failReports: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smtpmux_failure_reports_total",
			Help: "Messages that finally failed for some recipient, by what became of their failure report to the sender (sent, not_opted_in, null_sender, report, rate_limited, no_own_provider, suppressed, credential_inactive, duplicate, error)."},
			[]string{"outcome"}),
	}
	reg.MustRegister(m.sessions, m.authFailures, m.limitedBy, m.accepted, m.rejected, m.attempts, m.latency, m.feedback, m.reports, m.failReports)
	return m
}

func (m *Metrics) session() {
	if m != nil {
		m.sessions.Inc()
	}
}

func (m *Metrics) authFailed() {
	if m != nil {
		m.authFailures.Inc()
	}
}

// limited counts one connection or attempt turned away by reason:
// max_connections, max_connections_per_ip, junk_commands, auth_failures,
// proxy_header (a trusted balancer sent no valid PROXY header),
// proxy_untrusted (a PROXY header from an address not trusted to send one).
func (m *Metrics) limited(reason string) {
	if m != nil {
		m.limitedBy.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) acceptedOne() {
	if m != nil {
		m.accepted.Inc()
	}
}

func (m *Metrics) refused(reason string) {
	if m != nil {
		m.rejected.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) attempt(provider, outcome string, d time.Duration) {
	if m != nil {
		// Latency first: a scrape that sees the attempt counted sees its
		// duration too.
		m.latency.WithLabelValues(provider).Observe(d.Seconds())
		m.attempts.WithLabelValues(provider, outcome).Inc()
	}
}

func (m *Metrics) bounced(provider, typ, source string) { m.Feedback(provider, typ, source) }

// Feedback counts one bounce or complaint: typ is hard, soft or
// complaint, source smtp, dsn or arf. The bounce listener calls it.
func (m *Metrics) Feedback(provider, typ, source string) {
	if m != nil {
		m.feedback.WithLabelValues(provider, typ, source).Inc()
	}
}

// Report counts one report the bounce listener accepted.
func (m *Metrics) Report(kind, outcome string) {
	if m != nil {
		m.reports.WithLabelValues(kind, outcome).Inc()
	}
}

// failureReport counts one failure report decision (relay/failreports.go).
func (m *Metrics) failureReport(outcome string) {
	if m != nil {
		m.failReports.WithLabelValues(outcome).Inc()
	}
}

package admin

import (
	"net/http"
	"time"

	"github.com/smtpmux/smtpmux/internal/deliverability"
)

// Deliverability rates (SPEC §13): bounce and complaint rates of the
// team's mail over the last hour, day and week, read from the counters
// kept as mail flows (store.FeedbackCounts, store.RecipientCounts*), by
// the creation time of the messages: a window's rate is that of the mail
// sent in it, whenever its bounces came back.

// rateWindows are the windows reported, in order.
var rateWindows = []struct {
	name string
	d    time.Duration
}{{"1h", time.Hour}, {"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}}

type rateWindow struct {
	Window        string  `json:"window"`
	From          string  `json:"from"`
	Delivered     int64   `json:"delivered"`
	Bounces       int64   `json:"bounces"`
	HardBounces   int64   `json:"hard_bounces"`
	SoftBounces   int64   `json:"soft_bounces"`
	Complaints    int64   `json:"complaints"`
	BounceRate    float64 `json:"bounce_rate"`
	ComplaintRate float64 `json:"complaint_rate"`
	Level         string  `json:"level"`
}

type rateThresholds struct {
	BounceWarning    float64 `json:"bounce_warning"`
	BounceAtRisk     float64 `json:"bounce_at_risk"`
	ComplaintWarning float64 `json:"complaint_warning"`
	ComplaintAtRisk  float64 `json:"complaint_at_risk"`
	MinVolume        int64   `json:"min_volume"`
}

type deliverabilityReport struct {
	ProviderID *string        `json:"provider_id"`
	Level      string         `json:"level"`
	Windows    []rateWindow   `json:"windows"`
	Thresholds rateThresholds `json:"thresholds"`
}

// thresholds are the configured ones, or the defaults.
func (s *Server) thresholds() deliverability.Thresholds {
	if s.opts.Deliverability == (deliverability.Thresholds{}) {
		return deliverability.Defaults
	}
	return s.opts.Deliverability
}

// providerDeliverability is GET /providers/{id}/deliverability.
func (s *Server) providerDeliverability(c *call) error {
	p, err := s.res.providers.load(c)
	if err != nil {
		return err
	}
	return s.answerRates(c, p.ID)
}

// teamDeliverability is GET /deliverability: the team's mail through
// every provider.
func (s *Server) teamDeliverability(c *call) error { return s.answerRates(c, "") }

func (s *Server) answerRates(c *call, providerID string) error {
	rep, err := s.rates(c.team(), providerID)
	if err != nil {
		return err
	}
	c.ok(http.StatusOK, rep)
	return nil
}

// rates computes the report of teamID's mail (through providerID only,
// unless "").
func (s *Server) rates(teamID, providerID string) (*deliverabilityReport, error) {
	t := s.thresholds()
	now := s.now()
	rep := &deliverabilityReport{ProviderID: nullable(providerID), Level: string(deliverability.InsufficientVolume),
		Thresholds: rateThresholds{t.BounceWarning, t.BounceAtRisk, t.ComplaintWarning, t.ComplaintAtRisk, t.MinVolume}}
	for _, w := range rateWindows {
		from := now.Add(-w.d)
		delivered, hard, soft, complaints, err := s.st.FeedbackWindow(teamID, providerID, from)
		if err != nil {
			return nil, err
		}
		c := deliverability.Counts{Delivered: delivered, Complaints: complaints}
		c.Bounces = hard + soft
		r := deliverability.Judge(c, t)
		rep.Windows = append(rep.Windows, rateWindow{Window: w.name, From: rfc3339(from), Delivered: c.Delivered,
			Bounces: c.Bounces, HardBounces: hard, SoftBounces: soft, Complaints: c.Complaints,
			BounceRate: r.BounceRate, ComplaintRate: r.ComplaintRate, Level: string(r.Level)})
		rep.Level = string(deliverability.Worst(deliverability.Level(rep.Level), r.Level))
	}
	return rep, nil
}

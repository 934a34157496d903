package dashboard

import (
	"fmt"
	"net/http"
)

// feedback is one bounce or complaint recorded against a recipient
// (GET /emails/{id}, recipients[].feedback).
type feedback struct {
	Kind       string  `json:"kind"`   // bounce, complaint
	Type       *string `json:"type"`   // hard or soft; the ARF type of a complaint
	Source     string  `json:"source"` // smtp, dsn, arf, ses
	Status     *string `json:"status"`
	Diagnostic *string `json:"diagnostic"`
	At         string  `json:"at"`
}

// SourceText names where the feedback came from, for the message page.
func (f feedback) SourceText() string {
	switch f.Source {
	case "smtp":
		return "the upstream's SMTP reply"
	case "dsn":
		return "a bounce report (DSN)"
	case "arf":
		return "a complaint report (ARF)"
	case "ses":
		return "Amazon SES notification"
	}
	return f.Source
}

// rateWindow is one window of GET /deliverability.
type rateWindow struct {
	Window        string  `json:"window"`
	Delivered     int64   `json:"delivered"`
	Bounces       int64   `json:"bounces"`
	HardBounces   int64   `json:"hard_bounces"`
	SoftBounces   int64   `json:"soft_bounces"`
	Complaints    int64   `json:"complaints"`
	BounceRate    float64 `json:"bounce_rate"`
	ComplaintRate float64 `json:"complaint_rate"`
	Level         string  `json:"level"`
}

// delivReport is GET /deliverability or /providers/{id}/deliverability:
// the rates and the level the API judged them at (the thresholds are
// the API's; the page only shows its verdict).
type delivReport struct {
	Level      string       `json:"level"`
	Windows    []rateWindow `json:"windows"`
	Thresholds struct {
		BounceWarning    float64 `json:"bounce_warning"`
		BounceAtRisk     float64 `json:"bounce_at_risk"`
		ComplaintWarning float64 `json:"complaint_warning"`
		ComplaintAtRisk  float64 `json:"complaint_at_risk"`
		MinVolume        int64   `json:"min_volume"`
	} `json:"thresholds"`
}

// Alarming is a level worth a banner: warning or at risk.
func (d *delivReport) Alarming() bool {
	return d != nil && (d.Level == "warning" || d.Level == "at_risk")
}

// deliverability reads the team's report (providerID "") or one
// provider's; nil when the key may not read it or the API failed, so a
// page shows what it can without it.
func (d *Dashboard) deliverability(r *http.Request, s *session, providerID string) *delivReport {
	path := "/deliverability"
	if providerID != "" {
		path = "/providers/" + pathEscape(providerID) + "/deliverability"
	}
	var rep delivReport
	if _, err := d.get(r, s, path, nil, &rep); err != nil {
		return nil
	}
	return &rep
}

// levelText and levelClass are how a level reads and which badge it gets.
func levelText(l string) string {
	switch l {
	case "ok":
		return "healthy"
	case "warning":
		return "warning"
	case "at_risk":
		return "at risk"
	case "insufficient_volume":
		return "too little mail to judge"
	}
	return l
}

func levelClass(l string) string {
	switch l {
	case "ok":
		return "active"
	case "warning":
		return "pending"
	case "at_risk":
		return "failed"
	}
	return "muted"
}

// rate is a fraction as a percentage with two decimals ("0.42 %").
func rate(f float64) string { return fmt.Sprintf("%.2f %%", f*100) }

package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/smtpmux/smtpmux/internal/deliverability"
	"github.com/smtpmux/smtpmux/relay"
)

// bouncesConfig is the [bounces] section (SPEC §13): the suppression
// list's soft-bounce rule, and the listener for asynchronous reports
// (RFC 3464 DSNs, RFC 5965 ARF) sent to the VERP return path.
type bouncesConfig struct {
	// SoftBounceLimit is how many soft bounces in a row suppress a
	// recipient (0: soft bounces never suppress).
	SoftBounceLimit int `toml:"soft_bounce_limit"`
	// SuppressedAction is what a suppressed recipient gets: "refuse"
	// (550 5.1.1 / HTTP 422) or "accept" (recorded as suppressed, not
	// sent, as Amazon SES does).
	SuppressedAction string `toml:"suppressed_action"`
	// Listen is the bounce listener's address ("" = off, the default).
	Listen string `toml:"listen"`
	// Domain is the default return-path domain of SMTP providers that set
	// none of their own; "" = providers without return_path_domain keep
	// the sender's envelope address.
	Domain string `toml:"domain"`
	// TokenTTL is how long a VERP token is accepted after the attempt
	// that issued it.
	TokenTTL string `toml:"token_ttl"`
	// MaxMessageBytes caps one report.
	MaxMessageBytes int64 `toml:"max_message_bytes"`
	// MaxConnectionsPerIP caps one address's connections to the listener.
	MaxConnectionsPerIP int `toml:"max_connections_per_ip"`
	// ProxyProtocolFrom is [smtp]'s key for the bounce listener.
	ProxyProtocolFrom []string `toml:"proxy_protocol_from"`
	// Rate thresholds of GET …/deliverability (fractions).
	BounceRateWarning    float64 `toml:"bounce_rate_warning"`
	BounceRateAtRisk     float64 `toml:"bounce_rate_at_risk"`
	ComplaintRateWarning float64 `toml:"complaint_rate_warning"`
	ComplaintRateAtRisk  float64 `toml:"complaint_rate_at_risk"`
	// RateMinVolume is the fewest delivered recipients a window needs
	// before its rates are judged.
	RateMinVolume int64 `toml:"rate_min_volume"`
}

func bouncesDefaults(c *bouncesConfig) {
	c.SoftBounceLimit = 3
	c.SuppressedAction = relay.SuppressedRefuse
	c.TokenTTL = "30d"
	c.MaxMessageBytes = 1 << 20
	c.MaxConnectionsPerIP = 10
	d := deliverability.Defaults
	c.BounceRateWarning, c.BounceRateAtRisk = d.BounceWarning, d.BounceAtRisk
	c.ComplaintRateWarning, c.ComplaintRateAtRisk = d.ComplaintWarning, d.ComplaintAtRisk
	c.RateMinVolume = d.MinVolume
}

// thresholds are [bounces]' rate thresholds.
func (c *bouncesConfig) thresholds() deliverability.Thresholds {
	return deliverability.Thresholds{BounceWarning: c.BounceRateWarning, BounceAtRisk: c.BounceRateAtRisk,
		ComplaintWarning: c.ComplaintRateWarning, ComplaintAtRisk: c.ComplaintRateAtRisk, MinVolume: c.RateMinVolume}
}

// validateBounces checks [bounces] and parses its durations into c.
func (c *config) validateBounces(b *bouncesConfig) error {
	if b.SoftBounceLimit < 0 || b.SoftBounceLimit > 1000 {
		return &configError{"bounces.soft_bounce_limit", fmt.Sprintf("%d is not between 0 and 1000", b.SoftBounceLimit)}
	}
	if b.SuppressedAction != relay.SuppressedRefuse && b.SuppressedAction != relay.SuppressedAccept {
		return &configError{"bounces.suppressed_action", fmt.Sprintf("%q is not \"refuse\" or \"accept\"", b.SuppressedAction)}
	}
	if b.Listen != "" {
		if err := checkAddr(b.Listen); err != nil {
			return &configError{"bounces.listen", err.Error()}
		}
	}
	if b.Domain != "" && (!validHostname(b.Domain) || !strings.Contains(b.Domain, ".")) {
		return &configError{"bounces.domain", fmt.Sprintf("%q is not a domain name", b.Domain)}
	}
	d, err := parseDays(b.TokenTTL)
	if err != nil || d < time.Hour {
		return &configError{"bounces.token_ttl", fmt.Sprintf("%q is not a duration of at least an hour like \"30d\"", b.TokenTTL)}
	}
	c.bounceTokenTTL = d
	if b.MaxMessageBytes < 4096 || b.MaxMessageBytes > 64<<20 {
		return &configError{"bounces.max_message_bytes", fmt.Sprintf("%d is not between 4096 and 67108864", b.MaxMessageBytes)}
	}
	if b.MaxConnectionsPerIP < 1 {
		return &configError{"bounces.max_connections_per_ip", "must be at least 1"}
	}
	for _, p := range []struct {
		key             string
		warning, atRisk float64
	}{{"bounces.bounce_rate", b.BounceRateWarning, b.BounceRateAtRisk}, {"bounces.complaint_rate", b.ComplaintRateWarning, b.ComplaintRateAtRisk}} {
		if !(p.warning > 0 && p.warning <= p.atRisk && p.atRisk <= 1) {
			return &configError{p.key + "_warning", fmt.Sprintf("%s_warning (%g) and %s_at_risk (%g) must satisfy 0 < warning <= at_risk <= 1",
				p.key, p.warning, p.key, p.atRisk)}
		}
	}
	if b.RateMinVolume < 1 {
		return &configError{"bounces.rate_min_volume", "must be at least 1"}
	}
	return nil
}

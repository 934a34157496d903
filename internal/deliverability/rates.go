// Package deliverability holds the rate rule of SPEC §13: a bounce rate
// and a complaint rate over a window, and the level they put a sender at
// (ok, warning, at risk) once the window holds enough mail to mean
// something. It is a pure rule in a leaf package: admin reports it, the
// relay could hold an account on it, and neither has a second copy.
package deliverability

// Level is how a sender stands over one window.
type Level string

// Levels, from best to worst. InsufficientVolume: fewer delivered
// recipients than the minimum volume, so no rate is judged (three
// messages and one bounce are not a 33 % bounce rate).
const (
	InsufficientVolume Level = "insufficient_volume"
	OK                 Level = "ok"
	Warning            Level = "warning"
	AtRisk             Level = "at_risk"
)

func (l Level) rank() int {
	switch l {
	case Warning:
		return 2
	case AtRisk:
		return 3
	case OK:
		return 1
	}
	return 0
}

// Worst returns the worse of two levels.
func Worst(a, b Level) Level {
	if b.rank() > a.rank() {
		return b
	}
	return a
}

// Thresholds are the configured limits (fractions, 0.05 = 5 %).
type Thresholds struct {
	BounceWarning, BounceAtRisk       float64
	ComplaintWarning, ComplaintAtRisk float64
	// MinVolume is the fewest delivered recipients a window needs before
	// its rates are judged.
	MinVolume int64
}

// Defaults are SES's review levels (5 % bounces, 0.1 % complaints) as
// warnings and twice and five times them as at risk, over 100 recipients.
var Defaults = Thresholds{BounceWarning: 0.05, BounceAtRisk: 0.10, ComplaintWarning: 0.001, ComplaintAtRisk: 0.005, MinVolume: 100}

// Counts are one window's figures.
type Counts struct {
	// Delivered are recipients with a final outcome at the upstream (sent,
	// or refused by it): the denominator of both rates.
	Delivered  int64
	Bounces    int64
	Complaints int64
}

// Rates are one window's rates and level.
type Rates struct {
	BounceRate    float64
	ComplaintRate float64
	Level         Level
}

// Judge computes c's rates and level under t.
func Judge(c Counts, t Thresholds) Rates {
	var r Rates
	if c.Delivered > 0 {
		r.BounceRate = float64(c.Bounces) / float64(c.Delivered)
		r.ComplaintRate = float64(c.Complaints) / float64(c.Delivered)
	}
	switch {
	case c.Delivered < max(t.MinVolume, 1):
		r.Level = InsufficientVolume
	case r.BounceRate >= t.BounceAtRisk || r.ComplaintRate >= t.ComplaintAtRisk:
		r.Level = AtRisk
	case r.BounceRate >= t.BounceWarning || r.ComplaintRate >= t.ComplaintWarning:
		r.Level = Warning
	default:
		r.Level = OK
	}
	return r
}

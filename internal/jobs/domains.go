package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/smtpmux/smtpmux/relay/dnscheck"
	"github.com/smtpmux/smtpmux/store"
)

// DefaultRecheckInterval is how often the background check looks at each
// domain again when the config does not say.
const DefaultRecheckInterval = 6 * time.Hour

// VerifyTimeout bounds one verification. dnscheck runs the four lookups
// concurrently with a 1 s timeout per server, so this only matters for a
// resolver list that is long and dead.
const VerifyTimeout = 15 * time.Second

// CheckDomain runs the DNS checks for d against resolver (dnscheck's
// address list; "" is the system's) and stores the result; now is read
// after the lookups, as the time of the check. A check cut short by ctx
// records nothing and returns ctx's error.
func CheckDomain(ctx context.Context, st *store.Store, resolver string, now func() time.Time, d *store.Domain) (*store.Domain, error) {
	r := &dnscheck.Resolver{Addr: resolver}
	res := r.Verify(ctx, d.Domain, d.Selector, d.VerificationToken, d.DKIMPublicTXT)
	if err := ctx.Err(); err != nil {
		// Cut short (shutdown, client gone): the "lookup failed" checks
		// say nothing about the domain, so do not record them.
		return nil, err
	}
	raw, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	at := now().UTC()
	return st.UpdateDomain(d.TeamID, d.ID, 0, func(x *store.Domain) error {
		was := x.Status
		x.Status = nextDomainStatus(was, res)
		x.LastCheck, x.LastCheckedAt, x.UpdatedAt = raw, &at, at
		if x.Status == store.DomainVerified && was != store.DomainVerified {
			x.VerifiedAt = &at
		}
		return nil
	})
}

// nextDomainStatus decides the status after a check. A check that failed
// only because DNS did not answer changes nothing: a pending domain stays
// pending, and a verified one keeps signing through a resolver outage
// rather than flapping its mail to unsigned. A definite answer decides.
func nextDomainStatus(cur string, res dnscheck.Result) string {
	switch {
	case res.Verified:
		return store.DomainVerified
	case res.Temporary:
		if cur == "" {
			return store.DomainPending
		}
		return cur
	default:
		return store.DomainFailed
	}
}

// DomainChecker re-verifies every domain in the background (every 6 hours
// by default), so a domain whose records were removed stops being signed for
// and one published late becomes verified without another API call.
type DomainChecker struct {
	st       *store.Store
	resolver string
	log      *slog.Logger
	now      func() time.Time
	// Interval is how old a domain's last check may get (default 6 h).
	// The checker wakes every Interval/6, so a domain is re-checked
	// between one and about 1.2 Intervals after its previous check,
	// whether that one was a manual verify or a background pass.
	Interval time.Duration
}

// NewDomainChecker returns the background re-check of st's domains
// through resolver; cmd runs it with Run. interval <= 0 means 6 hours;
// log nil discards, now nil is time.Now.
func NewDomainChecker(st *store.Store, resolver string, log *slog.Logger, now func() time.Time, interval time.Duration) *DomainChecker {
	if interval <= 0 {
		interval = DefaultRecheckInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &DomainChecker{st: st, resolver: resolver, log: log, now: now, Interval: interval}
}

// Run checks due domains at once and then every Interval/6 until ctx ends.
func (c *DomainChecker) Run(ctx context.Context) {
	tick := max(c.Interval/6, 10*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		c.Pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Pass checks every domain whose last check is older than Interval (or
// that was never checked) and returns how many it checked. Domains are
// checked one at a time: a pass is rare and small, and one at a time keeps
// the load on the resolver trivial.
func (c *DomainChecker) Pass(ctx context.Context) int {
	ds, err := c.st.Domains("")
	if err != nil {
		c.log.Error("domain re-check: listing domains failed", "err", err)
		return 0
	}
	due := c.now().UTC().Add(-c.Interval)
	n := 0
	for _, d := range ds {
		if ctx.Err() != nil {
			return n
		}
		if d.LastCheckedAt != nil && d.LastCheckedAt.After(due) {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, VerifyTimeout)
		nd, err := CheckDomain(cctx, c.st, c.resolver, c.now, d)
		cancel()
		n++
		switch {
		case errors.Is(err, store.ErrNotFound), ctx.Err() != nil:
			// deleted meanwhile, or stopping
		case err != nil:
			c.log.Log(ctx, levelUnlessClosed(err), "domain re-check failed", "domain_id", d.ID, "err", err)
		case nd.Status != d.Status:
			c.log.Info("domain status changed", "domain_id", d.ID, "domain", d.Domain, "team", d.TeamID,
				"from", d.Status, "to", nd.Status)
		}
	}
	return n
}

// levelUnlessClosed keeps shutdown (store closed under a running pass)
// out of the error log.
func levelUnlessClosed(err error) slog.Level {
	if errors.Is(err, store.ErrClosed) {
		return slog.LevelDebug
	}
	return slog.LevelError
}

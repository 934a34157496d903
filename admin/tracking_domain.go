package admin

import (
	"errors"
	"strings"

	"github.com/smtpmux/smtpmux/store"
)

// Who may put which tracking domain on a provider (SPEC §6, §10).
//
// The redirect checks that a request's Host is the domain a link was
// issued for; that protects nothing if any team may issue links for any
// name. A team that names accounts.google.com, another team's link domain
// or the daemon's own API host would get an open redirect there. So a
// tracking domain must be one of the team's verified sending domains (DNS
// proved the team controls it) or a subdomain of one, must not be a name
// the daemon itself answers as, and — belt and braces, since two teams
// can both publish their ownership tokens for one zone — must not be
// another team's tracking domain already.

// trackingJudge is the state a tracking domain is judged against, read
// once before a provider write: the store function that applies the body
// may run more than once and cannot read the store itself. The caller
// holds Server.trackMu from the read to the commit, so no other team can
// take the domain in between.
type trackingJudge struct {
	teamVerified []string        // the team's verified domains
	reserved     map[string]bool // names the daemon answers as
	taken        map[string]bool // other teams' tracking domains
}

// problem says why the team may not use d (code "" when it may).
func (j *trackingJudge) problem(d string) (code, msg string) {
	d = store.NormalizeDomain(d)
	if j == nil {
		return fcNotAllowed, "tracking_domain cannot be checked right now"
	}
	if j.reserved[d] {
		return fcNotAllowed, "tracking_domain must not be this server's own host name"
	}
	if j.taken[d] {
		return fcNotAllowed, "tracking_domain is already used by another team"
	}
	if !coveredBy(d, j.teamVerified) {
		return fcNotAllowed, "tracking_domain must be a verified domain of this team, or a subdomain of one: add it with POST /domains and verify it first"
	}
	return "", ""
}

// coveredBy reports whether d is one of domains or a subdomain of one.
func coveredBy(d string, domains []string) bool {
	for _, v := range domains {
		if d == v || strings.HasSuffix(d, "."+v) {
			return true
		}
	}
	return false
}

// trackingJudge reads what a write of teamID's provider needs to judge a
// tracking domain; none when neither the stored provider (cur, nil on
// create) nor the body names one, which spares the read of every team's
// providers.
func (s *Server) trackingJudge(teamID string, in *providerInput, cur *store.Provider) (*trackingJudge, error) {
	if !(in.tracking.Set && strings.TrimSpace(in.tracking.V) != "") && (cur == nil || cur.TrackingDomain == "") {
		return nil, nil
	}
	j := &trackingJudge{reserved: map[string]bool{}, taken: map[string]bool{}}
	for _, h := range append([]string{s.opts.Sending.Hostname}, s.opts.HTTP.ReservedHosts...) {
		if h = store.NormalizeDomain(h); h != "" {
			j.reserved[h] = true
		}
	}
	ds, err := s.st.Domains(teamID)
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		if d.Status == store.DomainVerified {
			j.teamVerified = append(j.teamVerified, d.Domain)
		}
	}
	// Every team's providers: a write-time uniqueness check on a rare
	// write (provider edits), over at most 200 providers a team.
	ps, err := s.st.Providers("")
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if p.TeamID != teamID && p.TrackingDomain != "" {
			j.taken[store.NormalizeDomain(p.TrackingDomain)] = true
		}
	}
	return j, nil
}

// ownsLinkHost reports whether teamID still has a verified domain that is
// host or a parent of it. The redirect asks this on every click, so that
// a link keeps working only while its team still proves the name — and
// links issued before tracking domains were checked at all, for names
// the team never owned, stop redirecting.
func ownsLinkHost(st *store.Store, teamID, host string) (bool, error) {
	h := store.NormalizeDomain(host)
	// Walk up the labels: one index lookup each, no list of the team's
	// domains per click. A bare TLD is never a sending domain.
	for strings.Contains(h, ".") {
		d, err := st.DomainByName(teamID, h)
		switch {
		case err == nil && d.Status == store.DomainVerified:
			return true, nil
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return false, err
		}
		_, h, _ = strings.Cut(h, ".")
	}
	return false, nil
}

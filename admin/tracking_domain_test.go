package admin

import (
	"net/http"
	"testing"

	"github.com/smtpmux/smtpmux/store"
)

// verifiedDomain stores name as one of teamID's domains with the given
// status, as a passed (or failed) DNS check would leave it. The DNS side
// of verification has its own tests (domains_test.go, e2e_dkim_test.go).
func (e *testEnv) verifiedDomain(teamID, name string, status ...string) *store.Domain {
	e.t.Helper()
	st := store.DomainVerified
	if len(status) > 0 {
		st = status[0]
	}
	now := e.clock.Now()
	d := &store.Domain{ID: store.NewID(store.PrefixDomain), TeamID: teamID, Domain: name, Selector: "smxtest",
		Algorithm: "ed25519", VerificationToken: "t", Status: st, CreatedAt: now, UpdatedAt: now}
	if st == store.DomainVerified {
		d.VerifiedAt = &now
	}
	if err := e.st.CreateDomain(d, 0); err != nil {
		e.t.Fatal(err)
	}
	return d
}

// A tracking domain must be a verified domain of the team or a subdomain
// of one, not the daemon's own names, and not another team's tracking
// domain (hostile-tenant audit of issue 12): otherwise a team gets an open
// redirect on a name it does not own.
func TestTrackingDomainOwnership(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Sending.Hostname = "mx.example.com"
		o.HTTP.ReservedHosts = []string{"api.example.com", "127.0.0.1"}
	})
	e.verifiedDomain(e.team.ID, "example.com")
	e.verifiedDomain(e.team.ID, "pending.example", store.DomainPending)
	e.verifiedDomain(e.team.ID, "failed.example", store.DomainFailed)
	with := func(d string) map[string]any {
		b := validSMTP()
		b["tracking_domain"] = d
		return b
	}
	for _, d := range []string{"accounts.google.com", "pending.example", "t.pending.example", "t.failed.example",
		"evilexample.com", "example.com.evil.example", "mx.example.com", "API.example.com."} {
		expectErr(t, e.do("POST", "/api/v1/providers", with(d)), 422, "validation_error", "tracking_domain")
	}
	for _, d := range []string{"example.com", "Links.Example.com", "a.b.example.com"} {
		e.createProvider(with(d))
	}
	id := e.createProvider(with(""))

	// Team B publishes its own ownership token for example.com too (two
	// teams can verify one zone): it still may not take team A's link
	// domain, on create or on PATCH, but may use another name in it.
	teamB, _, rootB := e.provision("other")
	asB := func(method, path string, body any) *resp {
		return e.do(method, path, body, "Authorization", "Bearer "+rootB)
	}
	e.verifiedDomain(teamB.ID, "example.com")
	expectErr(t, asB("POST", "/api/v1/providers", with("links.example.com")), 422, "validation_error", "tracking_domain")
	r := asB("POST", "/api/v1/providers", with("b.example.com"))
	if r.Code != http.StatusCreated {
		t.Fatalf("team B's own name: %s", r.Body)
	}
	idB := r.str("data.id")
	expectErr(t, asB("PATCH", "/api/v1/providers/"+idB, map[string]any{"tracking_domain": "links.example.com"}),
		422, "validation_error", "tracking_domain")
	expectErr(t, asB("PATCH", "/api/v1/providers/"+idB, map[string]any{"tracking_domain": "accounts.google.com"}),
		422, "validation_error", "tracking_domain")
	// And team A may not take team B's.
	expectErr(t, e.do("PATCH", "/api/v1/providers/"+id, map[string]any{"tracking_domain": "b.example.com"}),
		422, "validation_error", "tracking_domain")
	if p, _ := e.st.Provider(idB); p.TrackingDomain != "b.example.com" {
		t.Fatalf("team B's provider changed: %q", p.TrackingDomain)
	}

	// The rule holds on every write: once team B's domain is gone, an
	// edit of something else is refused until the tracking domain is
	// cleared.
	ds, _ := e.st.Domains(teamB.ID)
	if err := e.st.DeleteDomain(teamB.ID, ds[0].ID, 0); err != nil {
		t.Fatal(err)
	}
	expectErr(t, asB("PATCH", "/api/v1/providers/"+idB, map[string]any{"name": "renamed"}), 422, "validation_error", "tracking_domain")
	if r := asB("PATCH", "/api/v1/providers/"+idB, map[string]any{"name": "renamed", "tracking_domain": nil}); r.Code != 200 {
		t.Fatalf("clearing the tracking domain: %s", r.Body)
	}
}

// A link redirects only while its team still has a verified domain for
// the link's host: links issued for a name the team never proved (stored
// before tracking domains were checked) or no longer does answer 404.
func TestTrackingRedirectNeedsOwnedHost(t *testing.T) {
	e := newEnv(t)
	d := e.verifiedDomain(e.team.ID, "team-a.example")
	msgID := store.NewID(store.PrefixMessage)
	for tok, host := range map[string]string{"tokOwned": "t.team-a.example", "tokHijack": "trk.victim.example"} {
		e.saveLink(store.TrackingLink{Token: tok, TeamID: e.team.ID, MessageID: msgID, URL: "https://phish.example/",
			CreatedAt: e.clock.Now(), Host: host})
	}
	if rec := rawDo(e.srv, "GET", "/t/tokOwned", "Host", "t.team-a.example"); rec.Code != http.StatusFound {
		t.Fatalf("owned host: %d %s", rec.Code, rec.Body)
	}
	expectJSON404(t, rawDo(e.srv, "GET", "/t/tokHijack", "Host", "trk.victim.example"))
	if err := e.st.DeleteDomain(e.team.ID, d.ID, 0); err != nil {
		t.Fatal(err)
	}
	expectJSON404(t, rawDo(e.srv, "GET", "/t/tokOwned", "Host", "t.team-a.example"))
}

package dashboard

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/admin"
	"github.com/smtpmux/smtpmux/internal/deliverability"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// TestDeliverabilityShown: with one hard bounce (from a DSN) and one
// complaint (from an ARF report) among three delivered recipients, the
// API judges the team at risk; the Overview shows the rates with an
// "at risk" badge, the Sending accounts page a banner, the account's page
// its own rates, and the message page each recipient's feedback with its
// source — the upstream's words escaped.
func TestDeliverabilityShown(t *testing.T) {
	e := newEnv(t, func(o *admin.Options) {
		o.Deliverability = deliverability.Thresholds{BounceWarning: 0.02, BounceAtRisk: 0.10,
			ComplaintWarning: 0.001, ComplaintAtRisk: 0.003, MinVolume: 1}
	})
	code, body := e.apiDo("POST", "/api/v1/providers", e.root, strings.Replace(smtpJSON, "%q", `"relay"`, 1))
	if code != http.StatusCreated {
		t.Fatalf("provider: %d %s", code, body)
	}
	pid := extract(t, body, `"id":"([^"]+)"`)
	xss := `<script>alert(1)</script>`
	now := time.Now().UTC()
	m := &store.Message{ID: store.NewIDAt(store.PrefixMessage, now), TeamID: e.team.ID, Source: "smtp", From: "a@example.com",
		Recipients: []store.Recipient{{Address: "ok@example.net", Status: state.MessagePending}, {Address: "bad@example.net", Status: state.MessagePending},
			{Address: "angry@example.net", Status: state.MessagePending}},
		Status: state.MessagePending, CreatedAt: now, UpdatedAt: now}
	if err := e.st.Enqueue(m, []byte("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.UpdateMessage(m.ID, func(m *store.Message) error {
		for i := range m.Recipients {
			r := &m.Recipients[i]
			r.Status, r.ProviderID, r.Code = state.MessageSent, pid, 250
			switch r.Address {
			case "bad@example.net":
				r.Status = state.MessageFailed
				r.Feedback = append(r.Feedback, store.Feedback{Kind: store.FeedbackBounce, Type: store.BounceHard, Source: "dsn",
					Status: "5.1.1", Diagnostic: "smtp; 550 " + xss, ProviderID: pid, At: now})
			case "angry@example.net":
				r.Feedback = append(r.Feedback, store.Feedback{Kind: store.FeedbackComplaint, Type: "abuse", Source: "arf", ProviderID: pid, At: now})
			}
		}
		m.Status = state.MessageSent
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	b.signIn(e.root)
	for _, path := range []string{"/overview", "/accounts", "/accounts/" + pid} {
		p := b.get(path)
		if p.Code != http.StatusOK || !strings.Contains(p.Body, `<span class="badge badge-failed" id="deliv-level">at risk</span>`) {
			t.Fatalf("%s: no at-risk badge (%d): %s", path, p.Code, p.Body)
		}
	}
	if p := b.get("/overview"); !strings.Contains(p.Body, "33.33 %") {
		t.Fatalf("overview: no bounce rate of 1 in 3: %s", p.Body)
	}
	p := b.get("/messages/" + m.ID)
	for _, want := range []string{"hard bounce</span> from a bounce report (DSN)", "<code>5.1.1</code>", "smtp; 550 &lt;script&gt;alert(1)&lt;/script&gt;",
		"abuse complaint</span> from a complaint report (ARF)"} {
		if !strings.Contains(p.Body, want) {
			t.Fatalf("message page lacks %q: %s", want, p.Body)
		}
	}
	if strings.Contains(p.Body, xss) {
		t.Fatal("a DSN's diagnostic rendered as HTML")
	}
	// A key that may not read providers sees the pages without rates.
	lim := e.browser()
	lim.signIn(e.addKey(e.team.ID, store.KeyRoot, "email.read"))
	if p := lim.get("/overview"); p.Code != http.StatusOK || !strings.Contains(p.Body, "Rates are not available to this key") {
		t.Fatalf("limited overview: %d %s", p.Code, p.Body)
	}
}

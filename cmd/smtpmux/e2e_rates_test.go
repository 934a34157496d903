package main

import (
	"fmt"
	"testing"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// TestDeliverabilityRates sends a stream with known outcomes through the
// binary: 20 recipients through one provider, 2 of them refused 550 5.1.1
// (10 % bounces: at risk), and 1 complaint (5 %: at risk); a second
// provider's clean stream stays ok on its own and under the minimum
// volume. The team-wide report adds both.
func TestDeliverabilityRates(t *testing.T) {
	up := testpeer.Start(t, testpeer.Options{})
	d, listener := bounceDaemon(t, "rate_min_volume = 10\n")
	provID, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	hook := subscribeHook(t, d, "provider.deliverability_warning")
	c := d.client(key)
	defer c.Close()
	for i := range 2 {
		up.Always(testpeer.StepRcpt, fmt.Sprintf("bad%d@example.net", i), testpeer.Reply(550, "5.1.1", "no such user"))
	}

	// Before any mail: no rate is judged.
	code, resp := d.api("GET", "/providers/"+provID+"/deliverability", nil)
	if code != 200 || data(resp)["level"] != "insufficient_volume" {
		t.Fatalf("empty: %d %v", code, resp)
	}
	var ids []string
	for i := range 20 {
		rcpt := fmt.Sprintf("ok%d@example.net", i)
		if i < 2 {
			rcpt = fmt.Sprintf("bad%d@example.net", i)
		}
		id, err := sendOne(c, "s@example.com", []string{rcpt}, msgBody(fmt.Sprint("rate", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		d.waitEmail(id)
	}
	// One complaint, through the listener, about ok5's message.
	msgs := up.Received()
	var verpAddr string
	for _, m := range msgs {
		if len(m.To) == 1 && m.To[0] == "ok5@example.net" {
			verpAddr = m.From
		}
	}
	if err := sendReport(listener, verpAddr, fixture(t, "arf-abuse.eml", verpAddr, "ok5@example.net", "reader@hotmail.example")); err != nil {
		t.Fatal(err)
	}

	check := func(path string, delivered, hard, complaints float64, level string) {
		t.Helper()
		code, resp := d.api("GET", path, nil)
		r := data(resp)
		if code != 200 || r["level"] != level {
			t.Fatalf("%s: %d %v", path, code, resp)
		}
		for _, w := range r["windows"].([]any) {
			w := w.(map[string]any)
			if w["delivered"] != delivered || w["hard_bounces"] != hard || w["complaints"] != complaints || w["level"] != level {
				t.Fatalf("%s window %v", path, w)
			}
		}
	}
	check("/providers/"+provID+"/deliverability", 20, 2, 1, "at_risk")
	check("/deliverability", 20, 2, 1, "at_risk")
	// The crossing into at risk was announced (a warning may come first,
	// depending on the order the deliveries finished in).
	if ev := hook.wait(t, "provider.deliverability_warning", func(d map[string]any) bool {
		return d["provider_id"] == provID && d["level"] == "at_risk"
	}); ev["window"] == nil || ev["reason"] == nil {
		t.Fatalf("provider.deliverability_warning %v", ev)
	}
	r := data(func() map[string]any { _, r := d.api("GET", "/deliverability", nil); return r }())
	if w := r["windows"].([]any)[0].(map[string]any); w["bounce_rate"] != 0.1 || w["complaint_rate"] != 0.05 {
		t.Fatalf("rates %v", w)
	}
	// Another provider's figures are its own.
	code, resp = d.api("POST", "/providers", map[string]any{"name": "up2", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	if code != 201 {
		t.Fatalf("second provider: %d %v", code, resp)
	}
	check("/providers/"+data(resp)["id"].(string)+"/deliverability", 0, 0, 0, "insufficient_volume")
	// The team's own providers are never held; the operator's list says so.
	if code, resp := d.apiAs("operator-token-0123456789", "GET", "/operator/held-teams", nil); code != 200 || len(resp["data"].([]any)) != 0 {
		t.Fatalf("held teams: %d %v", code, resp)
	}
}

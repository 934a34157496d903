package webhook

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/event"
	"github.com/smtpmux/smtpmux/internal/netclass"
	"github.com/smtpmux/smtpmux/store"
)

func TestSignKnownVector(t *testing.T) {
	// HMAC-SHA256("whsec_test", `{"id":"evt_1"}`), computed independently.
	want := "sha256=030fa3b2413d1993c551364bd53bb9b3edb5c0c34d55dba6ada6041245632811"
	if got := Sign("whsec_test", []byte(`{"id":"evt_1"}`)); got != want {
		t.Fatalf("Sign = %s", got)
	}
	if !Verify("whsec_test", []byte(`{"id":"evt_1"}`), want) || Verify("whsec_other", []byte(`{"id":"evt_1"}`), want) {
		t.Fatal("Verify")
	}
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"evt_1","timestamp":1800000000}`)
	h := http.Header{}
	h.Set(HeaderSignature, Sign("k", body))
	h.Set(HeaderTimestamp, "1800000000")
	if err := VerifyRequest("k", body, h, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := VerifyRequest("k", body, h, now.Add(10*time.Minute), 5*time.Minute); !errors.Is(err, ErrStale) {
		t.Fatalf("replayed later: %v", err)
	}
	h.Set(HeaderTimestamp, "1800000001")
	if err := VerifyRequest("k", body, h, now, 5*time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("header timestamp not in the body: %v", err)
	}
	h.Set(HeaderTimestamp, "1800000000")
	if err := VerifyRequest("k", append(body, ' '), h, now, 5*time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered body: %v", err)
	}
}

// TestFailTwiceThenSucceed: the receiver answers 500 twice, then 200. It
// gets the event once as a success, every request validly signed, with
// the attempt number and timestamp inside the signed body.
func TestFailTwiceThenSucceed(t *testing.T) {
	e := newTestEnv(t)
	sk := newSink(t, e.clock, func(n int) int { return map[bool]int{true: 500, false: 204}[n < 2] })
	w, secret := e.hook(sk.srv.URL, event.Delivered)
	sk.secret = secret
	t0 := e.clock.Now()
	e.d.Emit(event.Event{Type: event.Delivered, TeamID: e.team, MessageID: "eml_abc", ProviderID: "dprov_p",
		Recipients: []string{"a@example.net"}, Code: 250, Reply: "250 ok", At: t0.Add(-time.Second)})
	for i, step := range []time.Duration{0, 30 * time.Second, 90 * time.Second} {
		e.clock.Advance(step)
		if n := e.d.DeliverDue(t.Context()); n != 1 {
			t.Fatalf("round %d: %d attempts", i, n)
		}
	}
	reqs := sk.received()
	if len(reqs) != 3 {
		t.Fatalf("%d requests", len(reqs))
	}
	for i, r := range reqs {
		if r.valid != nil {
			t.Fatalf("request %d: %v", i, r.valid)
		}
		body := decode(t, r.body)
		if r.header.Get(HeaderAttempt) != strconv.Itoa(i+1) || body["attempt"] != float64(i+1) ||
			r.header.Get(HeaderEventID) != reqs[0].header.Get(HeaderEventID) || body["id"] != r.header.Get(HeaderEventID) ||
			r.header.Get(HeaderEventType) != event.Delivered || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("request %d: %v %s", i, r.header, r.body)
		}
	}
	body := decode(t, reqs[2].body)
	data := body["data"].(map[string]any)
	if body["type"] != event.Delivered || body["team_id"] != e.team || body["occurred_at"] != "2026-03-01T11:59:59Z" ||
		data["message_id"] != "eml_abc" || data["smtp_code"] != 250.0 || data["recipients"].([]any)[0] != "a@example.net" ||
		data["reason"] != nil || !strings.HasPrefix(body["id"].(string), "evt_") {
		t.Fatalf("payload %s", reqs[2].body)
	}
	ds := e.deliveries(w)
	if len(ds) != 1 || ds[0].Status != store.DeliverySucceeded || len(ds[0].Attempts) != 3 ||
		ds[0].Attempts[0].StatusCode != 500 || ds[0].Attempts[0].Error != "HTTP status 500" ||
		ds[0].Attempts[2].StatusCode != 204 || ds[0].Attempts[2].Error != "" {
		t.Fatalf("delivery %+v", ds[0])
	}
	if e.d.DeliverDue(t.Context()) != 0 {
		t.Fatal("a succeeded delivery was attempted again")
	}
}

// TestBackoffSchedule fails every attempt and checks when each retry is
// due, then that the delivery fails for good after 24 hours and the
// webhook is marked failing until a success.
func TestBackoffSchedule(t *testing.T) {
	e := newTestEnv(t)
	failing := true
	var mu sync.Mutex
	sk := newSink(t, e.clock, func(int) int {
		mu.Lock()
		defer mu.Unlock()
		return map[bool]int{true: 503, false: 200}[failing]
	})
	w, secret := e.hook(sk.srv.URL, event.Bounced)
	sk.secret = secret
	t0 := e.clock.Now()
	e.d.Emit(event.Event{Type: event.Bounced, TeamID: e.team, MessageID: "eml_b"})
	var offsets []time.Duration
	for range 20 {
		if e.d.DeliverDue(t.Context()) != 1 {
			t.Fatal("nothing due")
		}
		d := e.deliveries(w)[0]
		if d.Status != store.DeliveryPending {
			break
		}
		offsets = append(offsets, d.NextAttemptAt.Sub(t0))
		e.clock.Set(d.NextAttemptAt)
	}
	if got, want := fmtDurations(offsets), fmtDurations(DefaultSchedule); got != want {
		t.Fatalf("retries at %s, want %s", got, want)
	}
	d := e.deliveries(w)[0]
	if d.Status != store.DeliveryFailed || len(d.Attempts) != 9 || d.CompletedAt == nil {
		t.Fatalf("final %+v", d)
	}
	if hw, _ := e.st.WebhookByID(w.ID); !hw.Failing {
		t.Fatal("webhook not marked failing")
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	e.d.Emit(event.Event{Type: event.Bounced, TeamID: e.team, MessageID: "eml_c"})
	e.d.DeliverDue(t.Context())
	if hw, _ := e.st.WebhookByID(w.ID); hw.Failing {
		t.Fatal("a success did not clear failing")
	}
}

func fmtDurations(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, d.String())
	}
	return strings.Join(s, " ")
}

// TestLateRetryIsNotABurst: a dispatcher that was down past several
// offsets spaces the remaining retries instead of firing them at once.
func TestLateRetryIsNotABurst(t *testing.T) {
	e := newTestEnv(t)
	sk := newSink(t, e.clock, func(int) int { return 500 })
	w, secret := e.hook(sk.srv.URL, event.Delivered)
	sk.secret = secret
	t0 := e.clock.Now()
	e.d.Emit(event.Event{Type: event.Delivered, TeamID: e.team})
	e.clock.Advance(3 * time.Hour)
	e.d.DeliverDue(t.Context())
	if next := e.deliveries(w)[0].NextAttemptAt; !next.Equal(t0.Add(3*time.Hour + 30*time.Second)) {
		t.Fatalf("next at +%s", next.Sub(t0))
	}
}

func TestTimeoutAndInternalTargets(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.Timeout = 200 * time.Millisecond })
	sk := newSink(t, e.clock, nil)
	sk.block = make(chan struct{}) // never answers
	defer close(sk.block)
	w, _ := e.hook(sk.srv.URL, event.Delivered)
	e.d.Emit(event.Event{Type: event.Delivered, TeamID: e.team})
	e.d.DeliverDue(t.Context())
	d := e.deliveries(w)[0]
	if d.Status != store.DeliveryPending || !strings.Contains(d.Attempts[0].Error, "timeout") {
		t.Fatalf("timeout: %+v", d.Attempts)
	}

	// Without AllowPrivateTargets the dialer refuses loopback, even for a
	// URL that got into the store without the API's check.
	e2 := newTestEnv(t, func(o *Options) { o.AllowPrivateTargets = false })
	sk2 := newSink(t, e2.clock, nil)
	w2, _ := e2.hook(sk2.srv.URL, event.Delivered)
	e2.d.Emit(event.Event{Type: event.Delivered, TeamID: e2.team})
	e2.d.DeliverDue(t.Context())
	d = e2.deliveries(w2)[0]
	if len(sk2.received()) != 0 || !strings.Contains(d.Attempts[0].Error, "internal address") {
		t.Fatalf("internal target reached: %+v", d.Attempts)
	}
}

func TestEmitMatchesSubscriptions(t *testing.T) {
	e := newTestEnv(t)
	sk := newSink(t, e.clock, nil)
	want, _ := e.hook(sk.srv.URL, event.Delivered, event.Rejected)
	other, _ := e.hook(sk.srv.URL, event.Bounced)
	off, _ := e.hook(sk.srv.URL, event.Delivered)
	if _, err := e.st.UpdateWebhook(e.team, off.ID, 0, func(w *store.Webhook) error { w.Enabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	e.d.Invalidate()
	id, n, err := e.d.Publish(event.Event{Type: event.Delivered, TeamID: e.team})
	if err != nil || n != 1 || !strings.HasPrefix(id, "evt_") {
		t.Fatalf("publish: %q %d %v", id, n, err)
	}
	if id, n, _ := e.d.Publish(event.Event{Type: event.Delivered, TeamID: "team_someoneelse00000000000"}); id != "" || n != 0 {
		t.Fatal("another team's event matched")
	}
	if len(e.deliveries(want)) != 1 || len(e.deliveries(other)) != 0 || len(e.deliveries(off)) != 0 {
		t.Fatal("wrong webhooks got the event")
	}
}

func TestGoneOrDisabledWebhook(t *testing.T) {
	e := newTestEnv(t)
	sk := newSink(t, e.clock, nil)
	gone, _ := e.hook(sk.srv.URL, event.Delivered)
	off, secret := e.hook(sk.srv.URL, event.Delivered)
	sk.secret = secret
	e.d.Emit(event.Event{Type: event.Delivered, TeamID: e.team})
	if _, _, err := e.d.SendTest(off); err != nil {
		t.Fatal(err)
	}
	if err := e.st.DeleteWebhook(e.team, gone.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.UpdateWebhook(e.team, off.ID, 0, func(w *store.Webhook) error { w.Enabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	e.d.DeliverDue(t.Context())
	if d := e.deliveries(gone)[0]; d.Status != store.DeliveryFailed || !strings.Contains(d.Attempts[0].Error, "deleted") {
		t.Fatalf("deleted webhook: %+v", d)
	}
	// The disabled webhook drops its event but still gets the explicit test.
	var test, other *store.WebhookDelivery
	for _, d := range e.deliveries(off) {
		if d.EventType == event.Test {
			test = d
		} else {
			other = d
		}
	}
	if other.Status != store.DeliveryFailed || test.Status != store.DeliverySucceeded {
		t.Fatalf("disabled: event %s test %s", other.Status, test.Status)
	}
	reqs := sk.received()
	if len(reqs) != 1 || reqs[0].valid != nil || decode(t, reqs[0].body)["data"].(map[string]any)["webhook_id"] != off.ID {
		t.Fatalf("test delivery %+v", reqs)
	}
}

// TestQueuedEventsSurviveRestart: an event queued before a crash is
// delivered by the next process, signed with the current secret.
func TestQueuedEventsSurviveRestart(t *testing.T) {
	e := newTestEnv(t)
	sk := newSink(t, e.clock, nil)
	w, _ := e.hook(sk.srv.URL, event.ProviderStatusChanged)
	e.d.Emit(event.Event{Type: event.ProviderStatusChanged, TeamID: e.team, ProviderID: "dprov_x", Status: "error", Reason: "535 auth"})
	// Rotate before the restart: the queued event must use the new secret.
	rotated := NewSecret()
	if _, err := e.st.UpdateWebhook(e.team, w.ID, 0, func(x *store.Webhook) error {
		x.SecretSealed = e.sealer.Seal(rotated)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.st.Close()
	e.open()
	sk.secret = rotated
	if n := e.d.DeliverDue(t.Context()); n != 1 {
		t.Fatalf("%d attempts after restart", n)
	}
	reqs := sk.received()
	if len(reqs) != 1 || reqs[0].valid != nil {
		t.Fatalf("%+v", reqs)
	}
	data := decode(t, reqs[0].body)["data"].(map[string]any)
	if data["provider_id"] != "dprov_x" || data["status"] != "error" || data["reason"] != "535 auth" {
		t.Fatalf("data %v", data)
	}
}

// TestSlowEndpointDoesNotDelayOthers runs the real loop: one endpoint
// hangs, the other receives all its events meanwhile, and the hanging one
// never holds more than PerEndpoint attempts.
func TestSlowEndpointDoesNotDelayOthers(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.Now = time.Now; o.Timeout = 30 * time.Second })
	slow := newSink(t, e.clock, nil)
	slow.block = make(chan struct{})
	fast := newSink(t, e.clock, nil)
	e.hook(slow.srv.URL, event.Delivered)
	e.hook(fast.srv.URL, event.Delivered)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.d.Run(ctx); close(done) }()
	for range 6 {
		e.d.Emit(event.Event{Type: event.Delivered, TeamID: e.team})
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(fast.received()) < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("fast endpoint got %d of 6 while the slow one hung", len(fast.received()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.d.mu.Lock()
	busy := 0
	for _, n := range e.d.busy {
		busy = max(busy, n)
	}
	e.d.mu.Unlock()
	if busy > 2 {
		t.Fatalf("slow endpoint holds %d attempts", busy)
	}
	close(slow.block)
	cancel()
	<-done
}

// A delivery that got no answer is logged as its failure class only: the
// address a name resolved to, and whether a name exists, are not for the
// team to read (hostile-tenant audit of issue 12). The URLs get into the
// store without the API's check, as a name that rebinds after creation
// would.
func TestDeliveryErrorNamesClassOnly(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.AllowPrivateTargets = false })
	sk := newSink(t, e.clock, nil)
	_, port, _ := net.SplitHostPort(sk.srv.Listener.Addr().String())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	open := newTestEnv(t) // allows private targets: the closed port is dialled
	for _, tc := range []struct {
		e    *env
		url  string
		want string
	}{
		{e, "http://localhost:" + port + "/hook", netclass.Refused},
		{e, sk.srv.URL + "/hook", netclass.Refused},
		{open, "http://" + closed + "/hook", "connection refused"},
	} {
		w, _ := tc.e.hook(tc.url, event.Delivered)
		tc.e.d.Emit(event.Event{Type: event.Delivered, TeamID: tc.e.team})
		tc.e.d.DeliverDue(t.Context())
		got := tc.e.deliveries(w)[0].Attempts[0].Error
		if got != tc.want {
			t.Fatalf("%s: error %q, want %q", tc.url, got, tc.want)
		}
		for _, bad := range []string{"127.0.0.1", "localhost", port, "dial", "lookup", "Post"} {
			if strings.Contains(got, bad) {
				t.Fatalf("%s: error %q shows %q", tc.url, got, bad)
			}
		}
	}
	if len(sk.received()) != 0 {
		t.Fatal("an internal target was reached")
	}
}

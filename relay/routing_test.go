package relay

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/ratelimit"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

func TestRateLimitPerCredential(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Limiter = ratelimit.New(3, time.Minute, nil) })
	c := h.dial(h.secret)
	for i := 0; i < 3; i++ {
		if _, err := send(c, "a@example.com", []string{"b@example.com"}, testBody); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	_, err := send(c, "a@example.com", []string{"b@example.com"}, testBody)
	if se, ok := err.(*gosmtp.SMTPError); !ok || se.Code != 451 || se.EnhancedCode != (gosmtp.EnhancedCode{4, 7, 1}) {
		t.Fatalf("4th transaction: %v, want 451 4.7.1", err)
	}
}

// mailboxSecret creates a mailbox with one password and returns both.
func (h *harness) mailboxSecret(address string) (*store.Mailbox, string) {
	h.t.Helper()
	mb := &store.Mailbox{ID: store.NewID(store.PrefixMailbox), TeamID: h.team, Address: address,
		SendScope: store.Scope{Type: "all"}, CreatedAt: time.Now()}
	if err := h.store.CreateMailbox(mb); err != nil {
		h.t.Fatal(err)
	}
	secret := store.NewSecret(store.SecretPrefixSending)
	if err := h.store.CreateMailboxPassword(&store.MailboxPassword{ID: store.NewID(store.PrefixPassword),
		MailboxID: mb.ID, TeamID: h.team, Name: "app", Hash: store.HashSecret(secret), CreatedAt: time.Now()}); err != nil {
		h.t.Fatal(err)
	}
	return mb, secret
}

func TestMailboxSenderRule(t *testing.T) {
	h := newHarness(t, nil)
	mb, secret := h.mailboxSecret("sales@example.com")
	body := strings.Replace(testBody, "From: a@example.com", "From: Sales <Sales@Example.com>", 1)
	tests := []struct {
		name, from, body string
		want             int
	}{
		{"mailbox address", "sales@example.com", body, 250},
		{"other envelope sender", "ceo@example.com", body, 550},
		{"other header From", "sales@example.com", testBody, 550},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := send(h.dial(secret), tc.from, []string{"b@example.com"}, tc.body)
			if got := smtpCode(err); err == nil && tc.want != 250 || err != nil && got != tc.want {
				t.Fatalf("err %v, want %d", err, tc.want)
			}
		})
	}
	// Suspending the mailbox stops its passwords at once.
	c := h.dial(secret)
	if _, err := h.store.UpdateMailbox(h.team, mb.ID, 0, func(m *store.Mailbox) error { m.Suspended = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := send(c, "sales@example.com", []string{"b@example.com"}, body); smtpCode(err) != 535 {
		t.Fatalf("suspended mailbox in open session: %v, want 535", err)
	}
	if err := h.dial("").Auth(plainAuth(secret)); smtpCode(err) != 535 {
		t.Fatalf("suspended mailbox at AUTH: %v", err)
	}
}

func TestBreakerPullsAndTrafficMoves(t *testing.T) {
	h := newHarness(t, nil)
	other := h.addProvider("fake", nil)
	h.fake.answer = func(int, Envelope) (*Result, error) {
		return nil, &DeliveryError{Failure: routing.Failure{Phase: routing.PhaseMail, Code: 421, Text: "closing"}}
	}
	c := h.dial(h.secret)
	sendOne := func(i int) *store.Message {
		reply, err := send(c, "a@example.com", []string{fmt.Sprintf("r%d@example.com", i)}, testBody)
		if err != nil {
			t.Fatal(err)
		}
		m := h.waitMessage(queuedRe.FindStringSubmatch(reply)[1])
		if m.Status != state.MessageSent || m.Recipients[0].ProviderID != other {
			t.Fatalf("message %s: %s via %s", m.ID, m.Status, m.Recipients[0].ProviderID)
		}
		return m
	}
	// The pick is weighted at random, so send one message at a time until
	// the failing upstream has seen the threshold (each fails over).
	i := 0
	for ; h.fake.count() < routing.BreakerThreshold; i++ {
		if i == 200 {
			t.Fatalf("failing upstream picked %d times in 200 messages", h.fake.count())
		}
		sendOne(i)
	}
	// Pulled: nothing more reaches it.
	for j := 0; j < 12; j++ {
		sendOne(i + j)
	}
	if n := h.fake.count(); n != routing.BreakerThreshold {
		t.Fatalf("failing upstream got %d attempts, want %d before it was pulled and none after", n, routing.BreakerThreshold)
	}
	snap := h.sched.Health(h.provID)
	if snap.State != "open" || snap.PulledUntil == nil || snap.PulledUntil.Sub(time.Now()) < 59*time.Minute {
		t.Fatalf("health %+v", snap)
	}
}

// TestPerSecondQuotaHoldsAtUpstream: a provider with a per-second quota
// of 5 (a sliding second) gets 14 messages as 5, 5 and 4 at three
// instants of the injected clock a second apart. The clock stands still
// while the test waits, so each instant is counted whole: the sends the
// scheduler makes at it, then a full scheduler turn with nothing more (no
// wall-clock measurement; the end-to-end suite keeps one of those).
func TestPerSecondQuotaHoldsAtUpstream(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 3, 1, 12, 0, 0, 400e6, time.UTC)}
	h := newHarnessClock(t, nil, nil, clock.now)
	h.updateProvider(func(p *store.Provider) { p.Quotas.PerSecond = &store.Range{Min: 5, Max: 5} })
	var mu sync.Mutex
	atInstant := map[time.Time]int{}
	h.fake.answer = func(int, Envelope) (*Result, error) {
		mu.Lock()
		atInstant[clock.now()]++
		mu.Unlock()
		return &Result{Reply: "250 2.0.0 Ok"}, nil
	}
	sent := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, c := range atInstant {
			n += c
		}
		return n
	}
	ids := h.sendN(h.secret, 14)
	total := 0
	for sec, want := range []int{5, 5, 4} {
		total += want
		waitFor(t, 5*time.Second, fmt.Sprintf("second %d: %d sent in all", sec, total), func() bool { return sent() >= total })
		h.settledAfter() // the rest stay held until the window rolls
		at := clock.now()
		mu.Lock()
		got := atInstant[at]
		mu.Unlock()
		if got != want || sent() != total {
			t.Fatalf("second %d: %d sends in it (%d in all), want %d (%d in all)", sec, got, sent(), want, total)
		}
		clock.set(at.Add(time.Second))
	}
	for _, id := range ids {
		if m := h.waitMessage(id); m.Status != state.MessageSent {
			t.Fatalf("%s: %s", id, m.Status)
		}
	}
}

func TestManagedDailyLimitAtAcceptance(t *testing.T) {
	h := newHarness(t, nil)
	daily := 2
	if err := h.store.PutTeam(&store.Team{ID: h.team, Name: "t", ManagedDailyLimit: &daily}); err != nil {
		t.Fatal(err)
	}
	// The team's only active provider is its managed account.
	if _, err := h.store.UpdateProvider("", h.provID, 0, func(p *store.Provider) error { p.Managed = true; return nil }); err != nil {
		t.Fatal(err)
	}
	c := h.dial(h.secret)
	// RSET gives reservations back.
	if err := c.Mail("a@example.com", nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"x@example.com", "y@example.com"} {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	reply, err := send(c, "a@example.com", []string{"x@example.com", "y@example.com"}, testBody)
	if err != nil {
		t.Fatalf("two recipients within the limit: %v", err)
	}
	// The reservations count in the day of the first RCPT, which the
	// record keeps (the message itself is created at the end of DATA).
	m, _ := h.store.Message(queuedRe.FindStringSubmatch(reply)[1])
	// (ManagedReserved itself may already be handed over to a claim.)
	if m.ManagedProviderID != h.provID || m.ManagedReservedAt.IsZero() || m.ManagedReservedAt.After(m.CreatedAt) {
		t.Fatalf("reserved on %q at %v, created %v", m.ManagedProviderID, m.ManagedReservedAt, m.CreatedAt)
	}
	_, err = send(c, "a@example.com", []string{"z@example.com"}, testBody)
	se, ok := err.(*gosmtp.SMTPError)
	if !ok || se.Code != 550 || se.EnhancedCode != (gosmtp.EnhancedCode{5, 7, 1}) || se.Message != "Daily sending limit reached" {
		t.Fatalf("third recipient of the day: %v, want 550 5.7.1 Daily sending limit reached", err)
	}
	// With another active provider in scope the mail is accepted (it can go there).
	h.addProvider("fake", nil)
	if _, err := send(h.dial(h.secret), "a@example.com", []string{"z@example.com"}, testBody); err != nil {
		t.Fatalf("with another provider in scope: %v", err)
	}
}

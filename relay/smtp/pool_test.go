package smtp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/testpeer"
	"github.com/smtpmux/smtpmux/routing"
)

func TestPoolReuse(t *testing.T) {
	for _, mode := range []string{testpeer.TLSNone, testpeer.TLSStartTLS, testpeer.TLSImplicit} {
		t.Run(mode, func(t *testing.T) {
			s := testpeer.Start(t, testpeer.Options{TLS: mode, Username: "u", Password: "p"})
			p := newProvider(t, configFor(s, mode, "u", "p"))
			for i := range 10 {
				if _, err := p.Send(ctxTimeout(t, 5*time.Second), envelope(), []byte(body)); err != nil {
					t.Fatalf("send %d: %v", i, err)
				}
			}
			if got := fmt.Sprint(s.Transactions()); got != "[10]" {
				t.Errorf("transactions per connection = %s, want [10]", got)
			}
			for _, m := range s.Messages() {
				if m.AuthUser != "u" {
					t.Errorf("message on a reused session not authenticated: %+v", m)
				}
			}
		})
	}
}

// A session whose upstream went away is noticed (at MAIL when reused at
// once, by RSET after a longer idle) and replaced without losing the send.
func TestPoolStaleSession(t *testing.T) {
	s := testpeer.Start(t, testpeer.Options{})
	p := newProvider(t, configFor(s, "", "", ""))
	send := func() {
		t.Helper()
		if _, err := p.Send(ctxTimeout(t, 5*time.Second), envelope(), []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	send()
	s.CloseConns()
	eventually(t, "peer to close", func() bool { return s.Open() == 0 })
	send()
	if got := fmt.Sprint(s.Transactions()); got != "[1 1]" {
		t.Errorf("transactions = %s, want [1 1]", got)
	}
}

// A session that saw a failure is not pooled.
func TestPoolDiscardsAfterFailure(t *testing.T) {
	s := testpeer.Start(t, testpeer.Options{})
	s.Script(testpeer.StepData, "", testpeer.Reply(451, "4.3.0", "later"))
	p := newProvider(t, configFor(s, "", "", ""))
	if _, err := p.Send(ctxTimeout(t, 5*time.Second), envelope(), []byte(body)); err == nil {
		t.Fatal("first send succeeded")
	}
	if _, err := p.Send(ctxTimeout(t, 5*time.Second), envelope(), []byte(body)); err != nil {
		t.Fatal(err)
	}
	if s.Conns() != 2 {
		t.Errorf("conns = %d, want 2", s.Conns())
	}
	eventually(t, "failed session to be closed", func() bool { return s.Open() == 1 })
}

func TestPoolMaxConns(t *testing.T) {
	for _, tc := range []struct{ maxConns, senders int }{{1, 10}, {3, 50}, {8, 50}} {
		t.Run(fmt.Sprintf("%d conns %d senders", tc.maxConns, tc.senders), func(t *testing.T) {
			s := testpeer.Start(t, testpeer.Options{TLS: testpeer.TLSStartTLS, Username: "u", Password: "p"})
			cfg := configFor(s, testpeer.TLSStartTLS, "u", "p")
			cfg.MaxConns = tc.maxConns
			p := newProvider(t, cfg)
			var wg sync.WaitGroup
			for i := range tc.senders {
				wg.Go(func() {
					env := envelope(fmt.Sprintf("r%d@example.com", i))
					if _, err := p.Send(ctxTimeout(t, 10*time.Second), env, []byte(body)); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if n := s.Count(); n != tc.senders {
				t.Errorf("delivered %d, want %d", n, tc.senders)
			}
			if s.Conns() > tc.maxConns || s.MaxOpen() > tc.maxConns {
				t.Errorf("conns = %d, max open = %d, limit %d", s.Conns(), s.MaxOpen(), tc.maxConns)
			}
		})
	}
}

// A Send that cannot get a connection in time fails as transient: the wait
// is ours, not the upstream's, so it must not trip the breaker.
func TestPoolWaitTimeout(t *testing.T) {
	s := testpeer.Start(t, testpeer.Options{})
	inMail := make(chan struct{}, 1)
	s.SetBehave(func(step testpeer.Step, _ string) testpeer.Action {
		if step == testpeer.StepMail {
			inMail <- struct{}{}
			return testpeer.Hang
		}
		return testpeer.Continue
	})
	cfg := configFor(s, "", "", "")
	cfg.MaxConns = 1
	p := newProvider(t, cfg)

	ctx1, cancel1 := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := p.Send(ctx1, envelope(), []byte(body))
		first <- err
	}()
	<-inMail
	_, err := p.Send(ctxTimeout(t, 50*time.Millisecond), envelope(), []byte(body))
	if c := deliveryError(t, err).Classified(); c != routing.Transient {
		t.Errorf("waiting send: class %v, want transient (%v)", c, err)
	}
	cancel1()
	want{class: routing.Connection, phase: routing.PhaseMail}.check(t, <-first)
	if n := len(p.slots); n != 0 {
		t.Errorf("%d slots still taken", n)
	}
}

func TestPoolIdleTimeout(t *testing.T) {
	s := testpeer.Start(t, testpeer.Options{})
	cfg := configFor(s, "", "", "")
	cfg.IdleTimeout = 30 * time.Millisecond
	p := newProvider(t, cfg)
	if _, err := p.Send(ctxTimeout(t, 5*time.Second), envelope(), []byte(body)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "idle session to be closed", func() bool { return s.Open() == 0 })
	if n := len(p.slots); n != 0 {
		t.Errorf("%d slots still taken", n)
	}
	if _, err := p.Send(ctxTimeout(t, 5*time.Second), envelope(), []byte(body)); err != nil {
		t.Fatal(err)
	}
	if s.Conns() != 2 {
		t.Errorf("conns = %d, want 2", s.Conns())
	}
}

func TestClose(t *testing.T) {
	s := testpeer.Start(t, testpeer.Options{})
	p := newProvider(t, configFor(s, "", "", ""))
	if _, err := p.Send(ctxTimeout(t, 5*time.Second), envelope(), []byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pooled session to be closed", func() bool { return s.Open() == 0 })
	_, err := p.Send(ctxTimeout(t, 5*time.Second), envelope(), []byte(body))
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("send after close: %v, want ErrClosed", err)
	}
	if c := deliveryError(t, err).Classified(); c != routing.Transient {
		t.Errorf("class = %v", c)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func BenchmarkSend(b *testing.B) {
	for _, mode := range []string{testpeer.TLSNone, testpeer.TLSImplicit} {
		b.Run(mode, func(b *testing.B) {
			s := testpeer.Start(b, testpeer.Options{TLS: mode, Username: "u", Password: "p"})
			p := newProvider(b, configFor(s, mode, "u", "p"))
			msg := []byte(body)
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := p.Send(context.Background(), envelope(), msg); err != nil {
						b.Error(err)
					}
				}
			})
		})
	}
}

// TestPoolLearnsUpstreamConnectionLimit: an upstream that allows 3
// connections and turns away a 4th with a 421 (as Microsoft 365 and Gmail
// do) is not failing: every send succeeds over the 3 connections, and the
// pool stops opening more.
func TestPoolLearnsUpstreamConnectionLimit(t *testing.T) {
	s := testpeer.Start(t, testpeer.Options{})
	refused := s.LimitConnections(3)
	cfg := configFor(s, testpeer.TLSNone, "", "")
	cfg.MaxConns = 10
	p := newProvider(t, cfg)
	const n = 60
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			if _, err := p.Send(ctxTimeout(t, 10*time.Second), envelope(), []byte(body)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("send failed: %v", err)
	}
	if got := s.Count(); got != n {
		t.Fatalf("upstream accepted %d messages, want %d", got, n)
	}
	if l := p.Limit(); l != 3 {
		t.Errorf("pool limit %d after the upstream refused connections past 3, want 3", l)
	}
	before := refused.Load()
	for range 10 {
		if _, err := p.Send(ctxTimeout(t, 5*time.Second), envelope(), []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if refused.Load() != before {
		t.Errorf("the pool kept opening connections past the learned limit")
	}
	t.Logf("%d connections refused while learning the limit", before)
	// After a minute at that limit the pool tries one connection more.
	p.growHeld(time.Now().Add(growAfter / 2))
	if l := p.Limit(); l != 3 {
		t.Errorf("limit %d before growAfter, want 3", l)
	}
	p.growHeld(time.Now().Add(growAfter))
	if l := p.Limit(); l != 4 {
		t.Errorf("limit %d after growAfter, want 4", l)
	}
}

// TestPoolRefusedEverywhereFailsFast: an upstream that refuses every new
// connection is down, not full: the sends fail at once with its reply
// (for the breaker), and the pool keeps its full limit for when it is back.
// "At once" is shown by cause, not by the clock: each send ends with the
// upstream's 421 while its own deadline is still far off (a send that
// waited for connections that could not come would end only with its
// context, and with the pool's own waiting error), after at most two
// dials of its own (one, and one more once nothing is open or opening).
func TestPoolRefusedEverywhereFailsFast(t *testing.T) {
	s := testpeer.Start(t, testpeer.Options{})
	s.Always(testpeer.StepConnect, "", testpeer.Reply(421, "4.3.2", "Service not available"))
	cfg := configFor(s, testpeer.TLSNone, "", "")
	cfg.MaxConns = 10
	p := newProvider(t, cfg)
	const sends = 20
	var wg sync.WaitGroup
	for range sends {
		wg.Go(func() {
			ctx := ctxTimeout(t, time.Minute)
			_, err := p.Send(ctx, envelope(), []byte(body))
			if ctx.Err() != nil {
				t.Errorf("a send ended only with its context: it waited for connections that could not come")
			}
			want{class: routing.Connection, phase: routing.PhaseConnect, code: 421, enhanced: "4.3.2"}.check(t, err)
		})
	}
	wg.Wait()
	if n := s.Conns(); n > 2*sends {
		t.Errorf("%d connections for %d sends: a send dialed again and again", n, sends)
	}
	if l := p.Limit(); l != 10 {
		t.Errorf("pool limit %d after a refusing upstream, want the full 10", l)
	}
}

// slowLimitedPeer is an upstream that allows limit connections (turning
// more away with 421) and takes delay to answer each message's final dot.
func slowLimitedPeer(t *testing.T, limit int, delay time.Duration) *testpeer.Server {
	s := testpeer.Start(t, testpeer.Options{})
	s.SetBehave(func(step testpeer.Step, _ string) testpeer.Action {
		switch {
		case step == testpeer.StepConnect && s.Open() > limit:
			return testpeer.Reply(421, "4.7.0", "Too many concurrent SMTP connections")
		case step == testpeer.StepData:
			time.Sleep(delay)
		}
		return testpeer.Continue
	})
	return s
}

// TestPoolBacklogBehindLearnedLimit: sends turned away wait for the open
// connections as long as their own deadline allows, however long the
// backlog (here far longer than DialTimeout), and the limit holds.
func TestPoolBacklogBehindLearnedLimit(t *testing.T) {
	s := slowLimitedPeer(t, 3, 30*time.Millisecond)
	cfg := configFor(s, testpeer.TLSNone, "", "")
	cfg.MaxConns, cfg.DialTimeout = 10, 100*time.Millisecond
	p := newProvider(t, cfg)
	const n = 40 // about 13 per connection: 400 ms of backlog
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range n {
		wg.Go(func() {
			if _, err := p.Send(ctxTimeout(t, 20*time.Second), envelope(), []byte(body)); err != nil {
				failed.Add(1)
				t.Errorf("send: %v", err)
			}
		})
	}
	wg.Wait()
	if s.Count() != n || failed.Load() != 0 {
		t.Fatalf("%d sent, %d failed", s.Count(), failed.Load())
	}
	if l := p.Limit(); l != 3 {
		t.Errorf("limit %d, want 3", l)
	}
}

// TestPoolOneRefusalLowersLimitByOne: a send turned away once, while
// another connection works, waits for that connection instead of dialing
// again and again: the pool's limit drops by one, not to one.
func TestPoolOneRefusalLowersLimitByOne(t *testing.T) {
	s := testpeer.Start(t, testpeer.Options{})
	var conns atomic.Int32
	// The first message's final dot is answered only once the second
	// send's dial has been turned away, so that the second finds the
	// first connection busy however slow the machine (a fixed delay let
	// it find the connection idle and reuse it without dialing).
	refused := make(chan struct{})
	var once sync.Once
	s.SetBehave(func(step testpeer.Step, _ string) testpeer.Action {
		switch step {
		case testpeer.StepConnect:
			if conns.Add(1) >= 2 {
				once.Do(func() { close(refused) })
				return testpeer.Reply(421, "4.3.2", "busy right now")
			}
		case testpeer.StepData:
			select {
			case <-refused:
			case <-time.After(5 * time.Second):
				t.Error("the second send never dialed")
			}
		}
		return testpeer.Continue
	})
	cfg := configFor(s, testpeer.TLSNone, "", "")
	cfg.MaxConns = 10
	p := newProvider(t, cfg)
	first := make(chan error, 1)
	go func() {
		_, err := p.Send(ctxTimeout(t, 5*time.Second), envelope(), []byte(body))
		first <- err
	}()
	eventually(t, "the first connection", func() bool { return s.Open() == 1 })
	if _, err := p.Send(ctxTimeout(t, 5*time.Second), envelope(), []byte(body)); err != nil {
		t.Fatalf("second send: %v", err)
	}
	if err := <-first; err != nil {
		t.Fatalf("first send: %v", err)
	}
	if c := conns.Load(); c != 2 {
		t.Errorf("%d connections tried, want 2 (one turned away, then the open one reused)", c)
	}
	if l := p.Limit(); l != 9 {
		t.Errorf("limit %d after one refusal, want 9", l)
	}
}

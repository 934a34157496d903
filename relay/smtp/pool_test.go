package smtp

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

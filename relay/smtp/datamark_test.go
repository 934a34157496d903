package smtp

import (
	"bytes"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/testpeer"
	"github.com/smtpmux/smtpmux/routing"
)

// TestSendDataMarkOverlapsEnvelope: the data mark's write starts before
// MAIL (so its commit overlaps the envelope's round trips) and the body
// goes out only once the write has finished.
func TestSendDataMarkOverlapsEnvelope(t *testing.T) {
	s := testpeer.Start(t, testpeer.Options{})
	var started, startedAtRcpt atomic.Bool
	rcptSeen := make(chan struct{}, 1)
	s.SetBehave(func(step testpeer.Step, _ string) testpeer.Action {
		if step == testpeer.StepRcpt {
			startedAtRcpt.Store(started.Load())
			rcptSeen <- struct{}{}
		}
		return testpeer.Continue
	})
	p := newProvider(t, configFor(s, testpeer.TLSNone, "", ""))
	release := make(chan struct{})
	env := envelope()
	env.StartMark = func() { started.Store(true) }
	env.MarkData = func() error { <-release; return nil }
	done := make(chan error, 1)
	go func() {
		_, err := p.Send(ctxTimeout(t, 5*time.Second), env, []byte(body))
		done <- err
	}()
	<-rcptSeen
	if !startedAtRcpt.Load() {
		t.Fatal("the data mark had not been started when RCPT reached the upstream")
	}
	// The mark is not durable yet: nothing may reach the upstream's DATA.
	time.Sleep(100 * time.Millisecond)
	if n := len(s.Received()); n != 0 {
		t.Fatalf("the upstream read %d bodies before the data mark was durable", n)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Send: %v", err)
	}
	if m := s.WaitMessages(t, 1, 5*time.Second)[0]; !bytes.Equal(m.Data, []byte(body)) {
		t.Fatalf("upstream got %q", m.Data)
	}
}

// TestSendDataMarkFailureAfter354: when the mark cannot be recorded the
// body is not sent and no empty message is submitted either (the session
// is dropped after the 354 instead of ended with a dot); the next send
// uses a fresh session and arrives intact.
func TestSendDataMarkFailureAfter354(t *testing.T) {
	s := testpeer.Start(t, testpeer.Options{})
	p := newProvider(t, configFor(s, testpeer.TLSNone, "", ""))
	env := envelope()
	env.MarkData = func() error { return errors.New("disk full") }
	_, err := p.Send(ctxTimeout(t, 5*time.Second), env, []byte(body))
	want{class: routing.Transient, phase: routing.PhaseData}.check(t, err)

	if _, err := p.Send(ctxTimeout(t, 5*time.Second), envelope(), []byte(body)); err != nil {
		t.Fatalf("next Send: %v", err)
	}
	msgs := s.WaitMessages(t, 1, 5*time.Second)
	if len(s.Received()) != 1 || !bytes.Equal(msgs[0].Data, []byte(body)) {
		t.Fatalf("upstream read %d bodies, accepted %q; want only the second message", len(s.Received()), msgs[0].Data)
	}
	if c := s.Conns(); c != 2 {
		t.Fatalf("%d connections, want 2 (the session cut after 354 is not reused)", c)
	}
}

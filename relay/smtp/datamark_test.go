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

// TestSendDataMarkFailure: when the data mark cannot be recorded the body
// is not sent (nor an empty message); the session is dropped (the failure
// carries no reply code) and the next send, on a new one, arrives intact.
func TestSendDataMarkFailure(t *testing.T) {
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
	if n := s.Conns(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

// TestSendRefusedEnvelopeWritesNoMark: an attempt MAIL or RCPT refuses
// never writes the data mark (after a crash it would flag a message that
// never left as uncertain), and one that gets that far writes it once.
func TestSendRefusedEnvelopeWritesNoMark(t *testing.T) {
	for _, step := range []testpeer.Step{testpeer.StepMail, testpeer.StepRcpt, ""} {
		t.Run(map[testpeer.Step]string{"": "accepted"}[step]+string(step), func(t *testing.T) {
			s := testpeer.Start(t, testpeer.Options{})
			if step != "" {
				s.Always(step, "", testpeer.Reply(451, "4.3.0", "try later"))
			}
			p := newProvider(t, configFor(s, testpeer.TLSNone, "", ""))
			var marks atomic.Int32
			env := envelope()
			env.MarkData = func() error { marks.Add(1); return nil }
			_, err := p.Send(ctxTimeout(t, 5*time.Second), env, []byte(body))
			if (err == nil) != (step == "") {
				t.Fatalf("Send: %v", err)
			}
			if n, want := marks.Load(), map[bool]int32{true: 1, false: 0}[step == ""]; n != want {
				t.Fatalf("the data mark was written %d times, want %d", n, want)
			}
		})
	}
}

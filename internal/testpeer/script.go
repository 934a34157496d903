package testpeer

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	gosmtp "github.com/emersion/go-smtp"
)

// Step is a point in the SMTP dialogue at which a test can make the peer
// misbehave. Each step is consulted once per command (or once per
// connection for StepConnect).
type Step = string

// Steps the peer consults a script at. The arg passed along with each step
// is noted; scripts match it case-insensitively, "" matches any arg.
const (
	// StepConnect is a new TCP connection, before the greeting; arg is the
	// client's address. Reply sends that greeting (e.g. 421/554) and
	// closes; Drop closes without a word; Hang never greets.
	StepConnect Step = "connect"
	// StepHello is EHLO/HELO; arg is the client's hello name. A Reply is
	// sent in place of the 250.
	StepHello Step = "hello"
	// StepAuth is a completed AUTH exchange; arg is the username the
	// client presented. A Reply replaces the 235 (use 535 for bad
	// credentials regardless of the configured password).
	StepAuth Step = "auth"
	// StepMail is MAIL FROM; arg is the reverse path.
	StepMail Step = "mail"
	// StepRcpt is RCPT TO; arg is the recipient.
	StepRcpt Step = "rcpt"
	// StepData is the reply after the final dot, consulted once the whole
	// body has been read; arg is the reverse path of the transaction.
	// Drop here is the "uncertain" case: body received, no final reply.
	StepData Step = "data"
)

type actionKind int

const (
	kindContinue actionKind = iota
	kindReply
	kindDrop
	kindHang
)

// Action is what the peer does at a step. The zero Action is Continue: the
// peer behaves normally (accepts, or enforces AUTH when configured).
type Action struct {
	kind     actionKind
	Code     int
	Enhanced string // "4.3.0" form; "" lets the server derive X.0.0
	Text     string
}

// Predefined actions.
var (
	// Continue is the normal behaviour.
	Continue = Action{}
	// Drop closes the connection without replying.
	Drop = Action{kind: kindDrop}
	// Hang never replies; the handler stays blocked until ReleaseHangs or
	// the server is closed, and then the connection is closed.
	Hang = Action{kind: kindHang}
)

// Reply answers with the given code, enhanced code ("5.7.1" or "") and
// text instead of the normal reply. A 2xx at StepData is a successful
// final reply with custom text (for example a "queued as" token).
func Reply(code int, enhanced, text string) Action {
	return Action{kind: kindReply, Code: code, Enhanced: enhanced, Text: text}
}

// String describes the action for test failure messages.
func (a Action) String() string {
	switch a.kind {
	case kindReply:
		return fmt.Sprintf("reply %d %s %s", a.Code, a.Enhanced, a.Text)
	case kindDrop:
		return "drop"
	case kindHang:
		return "hang"
	}
	return "continue"
}

// IsContinue reports whether a is the normal behaviour.
func (a Action) IsContinue() bool { return a.kind == kindContinue }

// smtpError turns a Reply action into the error go-smtp writes verbatim.
func (a Action) smtpError() *gosmtp.SMTPError {
	return &gosmtp.SMTPError{Code: a.Code, EnhancedCode: parseEnhanced(a.Enhanced), Message: a.Text}
}

// parseEnhanced parses "4.3.0"; anything else means "let go-smtp derive it".
func parseEnhanced(s string) gosmtp.EnhancedCode {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return gosmtp.EnhancedCodeNotSet
	}
	var ec gosmtp.EnhancedCode
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return gosmtp.EnhancedCodeNotSet
		}
		ec[i] = n
	}
	return ec
}

// rule is one scripted entry: a queue of actions consumed one per matching
// step, or a single action applied every time.
type rule struct {
	step    Step
	match   string
	actions []Action
	always  bool
}

func (r *rule) matches(step Step, arg string) bool {
	return r.step == step && (r.match == "" || strings.EqualFold(r.match, arg))
}

// Script queues actions for step: each time the step happens with an arg
// matching match ("" = any), the next queued action is used; once they are
// used up the peer is back to normal. "451 once, then 250" is
//
//	s.Script(testpeer.StepData, "", testpeer.Reply(451, "4.3.0", "try later"))
//
// Rules are consulted in the order they were added, before Options.Behave.
func (s *Server) Script(step Step, match string, actions ...Action) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = append(s.rules, &rule{step: step, match: match, actions: append([]Action(nil), actions...)})
}

// Always makes step (with an arg matching match, "" = any) take action
// every time, until ClearScript.
func (s *Server) Always(step Step, match string, action Action) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = append(s.rules, &rule{step: step, match: match, actions: []Action{action}, always: true})
}

// SetBehave replaces Options.Behave while the peer runs (nil removes it).
func (s *Server) SetBehave(fn func(step Step, arg string) Action) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.Behave = fn
}

// ClearScript removes every scripted rule (Options.Behave stays).
func (s *Server) ClearScript() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = nil
}

// decide returns the action for one occurrence of step.
func (s *Server) decide(step Step, arg string) Action {
	s.mu.Lock()
	for i, r := range s.rules {
		if !r.matches(step, arg) {
			continue
		}
		a := r.actions[0]
		if !r.always {
			r.actions = r.actions[1:]
			if len(r.actions) == 0 {
				s.rules = append(s.rules[:i:i], s.rules[i+1:]...)
			}
		}
		s.mu.Unlock()
		return a
	}
	behave := s.opts.Behave
	s.mu.Unlock()
	if behave != nil {
		return behave(step, arg)
	}
	return Continue
}

// LimitConnections makes the peer turn away, with 421 4.7.0 at the
// greeting, a connection that would be its (n+1)th open one, as upstream
// accounts with a connection limit do (Microsoft 365 allows 3). It
// replaces Options.Behave and returns the count of connections turned away.
func (s *Server) LimitConnections(n int) *atomic.Int32 {
	refused := new(atomic.Int32)
	s.SetBehave(func(step Step, _ string) Action {
		if step == StepConnect && s.Open() > n {
			refused.Add(1)
			return Reply(421, "4.7.0", "Too many concurrent SMTP connections from this account")
		}
		return Continue
	})
	return refused
}

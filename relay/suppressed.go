package relay

import (
	"errors"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/senderr"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// ErrSuppressed is the refusal of a recipient on the team's suppression
// list (SPEC §13). It names the list so that the client's user knows
// what to do (remove the address with DELETE /api/v1/suppressions/{email}
// if the mailbox works again), and says nothing about why the address is
// listed: that is the team's business, shown in the API.
var ErrSuppressed = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
	Message: "Recipient address is on the suppression list; not sent"}

// Suppressed actions ([bounces] suppressed_action).
const (
	// SuppressedRefuse refuses a suppressed recipient (550 5.1.1 at
	// RCPT, 422 over HTTP): the default.
	SuppressedRefuse = "refuse"
	// SuppressedAccept accepts it and records it as suppressed without
	// sending, as Amazon SES does.
	SuppressedAccept = "accept"
)

// errAcceptSuppressed tells Rcpt to accept a suppressed recipient
// without sending to it (never reaches the client).
var errAcceptSuppressed = errors.New("suppressed recipient accepted")

// checkSuppressed refuses a recipient the credential's team has
// suppressed, or in accept mode returns errAcceptSuppressed. A list that
// cannot be read answers 451: mail to a suppressed address must not go
// out because of a read error.
func (srv *Server) checkSuppressed(c *Credential, to string) error {
	sup, err := srv.store.Suppressed(c.TeamID, to)
	if err != nil {
		srv.log.Error("reading the suppression list failed", "team", c.TeamID, "err", err)
		return errTempFail
	}
	if sup != nil {
		if srv.cfg.SuppressedAction == SuppressedAccept {
			return errAcceptSuppressed
		}
		srv.reject(c, "suppressed")
		return ErrSuppressed
	}
	return nil
}

// markSuppressed records the recipients of m in sup as suppressed: they
// are not sent to. A message left with no recipient to send to is
// finished at once (the caller stores it with store.RecordFinished).
func markSuppressed(m *store.Message, sup map[string]bool) {
	if len(sup) == 0 {
		return
	}
	for i := range m.Recipients {
		r := &m.Recipients[i]
		if sup[strings.ToLower(r.Address)] {
			t := m.CreatedAt
			r.Status, r.Reply, r.UpdatedAt = state.MessageSuppressed, "on the suppression list; not sent", &t
		}
	}
	if m.PendingCount() == 0 {
		m.Status, m.Reason = state.MessageSuppressed, "suppressed"
	}
}

// suppressedOf returns the first of rcpts the team has suppressed ("" if
// none), for the HTTP Sending API, which refuses the whole message; and
// all of them (lower-case), which accept mode records as suppressed.
func (srv *Server) suppressedOf(teamID string, rcpts []string) (string, map[string]bool, error) {
	var first string
	var all map[string]bool
	for _, a := range rcpts {
		sup, err := srv.store.Suppressed(teamID, a)
		if err != nil {
			return "", nil, errors.Join(senderr.ErrLimitsUnavailable, err)
		}
		if sup != nil {
			if first == "" {
				first = a
			}
			if all == nil {
				all = map[string]bool{}
			}
			all[strings.ToLower(a)] = true
		}
	}
	return first, all, nil
}

// SuppressedError is senderr.ErrSuppressed naming the address.
type SuppressedError struct{ Address string }

func (e *SuppressedError) Error() string { return "recipient " + e.Address + " is suppressed" }

// Unwrap makes errors.Is(err, senderr.ErrSuppressed) hold.
func (e *SuppressedError) Unwrap() error { return senderr.ErrSuppressed }

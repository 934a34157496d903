package relay

import (
	"errors"

	"github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/senderr"
)

// ErrSuppressed is the refusal of a recipient on the team's suppression
// list (SPEC §13). It names the list so that the client's user knows
// what to do (remove the address with DELETE /api/v1/suppressions/{email}
// if the mailbox works again), and says nothing about why the address is
// listed: that is the team's business, shown in the API.
var ErrSuppressed = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
	Message: "Recipient address is on the suppression list; not sent"}

// checkSuppressed refuses a recipient the credential's team has
// suppressed. A list that cannot be read answers 451: mail to a
// suppressed address must not go out because of a read error.
func (srv *Server) checkSuppressed(c *Credential, to string) error {
	sup, err := srv.store.Suppressed(c.TeamID, to)
	if err != nil {
		srv.log.Error("reading the suppression list failed", "team", c.TeamID, "err", err)
		return errTempFail
	}
	if sup != nil {
		srv.reject(c, "suppressed")
		return ErrSuppressed
	}
	return nil
}

// suppressedOf returns the first of rcpts the team has suppressed ("" if
// none), for the HTTP Sending API, which refuses the whole message.
func (srv *Server) suppressedOf(teamID string, rcpts []string) (string, error) {
	for _, a := range rcpts {
		sup, err := srv.store.Suppressed(teamID, a)
		if err != nil {
			return "", errors.Join(senderr.ErrLimitsUnavailable, err)
		}
		if sup != nil {
			return a, nil
		}
	}
	return "", nil
}

// SuppressedError is senderr.ErrSuppressed naming the address.
type SuppressedError struct{ Address string }

func (e *SuppressedError) Error() string { return "recipient " + e.Address + " is suppressed" }

// Unwrap makes errors.Is(err, senderr.ErrSuppressed) hold.
func (e *SuppressedError) Unwrap() error { return senderr.ErrSuppressed }

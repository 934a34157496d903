package relay

import (
	"errors"

	"github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/crlf"
)

// Replies to message content refused before anything is stored (SPEC
// §10): a bare CR or LF is how SMTP smuggling splits one accepted message
// into two transactions at an upstream, and a NUL byte is handled safely
// by no mail system.
var (
	errBareNewline = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Message has a bare CR or LF; lines must end in CRLF"}
	errNULByte = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Message has a NUL byte"}
)

// contentError maps a content refusal of the DATA filter to its reply, nil
// for any other error.
func contentError(err error) *smtp.SMTPError {
	switch {
	case errors.Is(err, crlf.ErrBareNewline):
		return errBareNewline
	case errors.Is(err, crlf.ErrNUL):
		return errNULByte
	}
	return nil
}

// contentRejectReason is the rejected-event reason (and metric label) of a
// content refusal (bare newline, NUL, over-long line, over-size message),
// "" for any other error. err is the reply readBody returned.
func contentRejectReason(err error) string {
	switch err {
	case errBareNewline:
		return "bare_newline"
	case errNULByte:
		return "nul_byte"
	case errLineTooLong:
		return "line_too_long"
	}
	// The message over the size limit: go-smtp's own 552 5.3.4 (SPEC
	// §4), refused like the others, so counted and logged like them.
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code == 552 && se.EnhancedCode == (smtp.EnhancedCode{5, 3, 4}) {
		return "message_too_large"
	}
	return ""
}

package relay

import (
	"testing"

	"github.com/emersion/go-smtp"
)

// TestAuthStoreErrorIsTemporary: when the store cannot answer, a
// credential cannot be checked — that is "try again later" (454 4.7.0 at
// AUTH, 451 at MAIL of an open session), never 535, and it does not count
// as an AUTH failure of the client's address.
func TestAuthStoreErrorIsTemporary(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AuthFailLimit = 2 })
	open := h.dial(h.secret) // authenticated while the store answered
	// A closed bbolt answers every read with an error: the injected failure.
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		err := h.dial("").Auth(plainAuth(h.secret))
		if smtpCode(err) != 454 {
			t.Fatalf("AUTH %d with a good key while the store fails: %v, want 454", i+1, err)
		}
		if se, _ := err.(*smtp.SMTPError); se == nil || se.EnhancedCode != (smtp.EnhancedCode{4, 7, 0}) {
			t.Fatalf("AUTH %d: %v, want 4.7.0", i+1, err)
		}
	}
	if err := open.Mail("a@example.com", nil); smtpCode(err) != 451 {
		t.Fatalf("MAIL of an open session while the store fails: %v, want 451", err)
	}
}

package smtpproto

import (
	"strings"
	"testing"
)

// TestList: the list the API's error text shows is exactly what Valid
// accepts, with the wire names unchanged.
func TestList(t *testing.T) {
	if got := strings.Join(All(), ", "); got != "none, plain, starttls, tls, ssl" {
		t.Fatalf("All() = %s", got)
	}
	for _, p := range All() {
		if !Valid(p) {
			t.Errorf("%q listed but not valid", p)
		}
	}
	for _, p := range []string{"", "STARTTLS", "smtps", "tls "} {
		if Valid(p) {
			t.Errorf("%q valid", p)
		}
	}
	if !ImplicitTLS(TLS) || !ImplicitTLS(SSL) || ImplicitTLS(STARTTLS) || ImplicitTLS(None) {
		t.Error("ImplicitTLS wrong")
	}
	if !Valid(Default) {
		t.Error("Default not valid")
	}
}

package state

import "testing"

// TestWireNames pins the string values: they are stored in bbolt and
// shown by the API, so renaming a constant must never change one.
func TestWireNames(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{string(ProviderActive), "active"},
		{string(ProviderInactive), "inactive"},
		{string(ProviderError), "error"},
		{string(ProviderPending), "pending"},
		{string(MessagePending), "pending"},
		{string(MessageSent), "sent"},
		{string(MessageFailed), "failed"},
		{string(MessageRejected), "rejected"},
		{string(MessageSuppressed), "suppressed"},
		{string(AttemptInProgress), "in_progress"},
		{string(AttemptSent), "sent"},
		{string(AttemptPartial), "partial"},
		{string(AttemptDeferred), "deferred"},
		{string(AttemptFailed), "failed"},
		{string(AttemptRejected), "rejected"},
		{string(AttemptInterrupt), "interrupted"},
	} {
		if c.got != c.want {
			t.Errorf("state %q, want wire name %q", c.got, c.want)
		}
	}
	if got := Join(ProviderStatuses(), ", "); got != "active, inactive, error, pending" {
		t.Errorf("ProviderStatuses = %s", got)
	}
	if got := Join(MessageStatuses(), ","); got != "pending,sent,failed,rejected,suppressed" {
		t.Errorf("MessageStatuses = %s", got)
	}
}

package store

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/smtpmux/smtpmux/internal/state"
)

// TestRecordWireNames: the typed states and the Managed field keep the
// JSON names records were written with (issue 13 item 5: a rename of Go
// identifiers, not of stored data).
func TestRecordWireNames(t *testing.T) {
	b, err := json.Marshal(&Provider{Status: state.ProviderActive, Managed: true, Type: TypeManagedSES})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"status":"active"`, `"is_shared":true`, `"type":"amazon_ses"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("provider JSON %s lacks %s", b, want)
		}
	}
	var p Provider
	if err := json.Unmarshal([]byte(`{"status":"error","is_shared":true}`), &p); err != nil || p.Status != state.ProviderError || !p.Managed {
		t.Errorf("decoded %+v, %v", p, err)
	}
	m := &Message{Status: state.MessageSent, Recipients: []Recipient{{Status: state.MessageFailed}},
		Attempts: []Attempt{{Status: state.AttemptInProgress}}}
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"status":"sent"`, `"status":"failed"`, `"status":"in_progress"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("message JSON %s lacks %s", b, want)
		}
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// TestManagedAccountThroughAWSSESv2Local sends over SMTP to the daemon
// whose managed account is backed by SES, with aws-ses-v2-local standing
// in for Amazon: the message arrives in its store with the same subject,
// sender, recipients and body.
func TestManagedAccountThroughAWSSESv2Local(t *testing.T) {
	// Its hourly limit is tested below: all of it in one UTC hour.
	clearOfWindowEnd(t, time.Hour, 30*time.Second)
	base := testpeer.StartSESLocal(t, "")
	d := newDaemon(t, map[string]string{"": fmt.Sprintf(`
[managed]
backend = "ses"
[managed.ses]
region = "us-east-1"
endpoint = %q
access_key_id = "AKIAEXAMPLEEXAMPLE01"
secret_access_key = "example-secret"
`, base)})
	code, resp := d.api("POST", "/api-keys", map[string]any{"name": "ses", "type": "sending"})
	if code != 201 {
		t.Fatalf("key: %d %v", code, resp)
	}
	key := data(resp)["key"].(string)
	c := d.client(key)
	defer c.Close()
	body := crlf("From: App <app@example.com>\nTo: user@example.net\nSubject: through managed SES\nMessage-ID: <ses-1@example.com>\n\nHello through SES.\n")
	id, err := sendOne(c, "app@example.com", []string{"user@example.net"}, body)
	if err != nil {
		t.Fatal(err)
	}
	e := d.waitEmail(id)
	if e["status"] != "sent" {
		t.Fatalf("email %v", e)
	}
	attempt := e["attempts"].([]any)[0].(map[string]any)
	var store struct {
		Emails []struct {
			MessageID   string `json:"messageId"`
			From        string `json:"from"`
			Subject     string `json:"subject"`
			Destination struct{ To []string }
			Body        struct{ Text string }
		}
	}
	resp2, err := http.Get(base + "/store")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp2.Body).Decode(&store)
	resp2.Body.Close()
	if len(store.Emails) != 1 {
		t.Fatalf("SES store has %d emails", len(store.Emails))
	}
	m := store.Emails[0]
	if m.Subject != "through managed SES" || !strings.Contains(m.From, "app@example.com") ||
		len(m.Destination.To) != 1 || !strings.Contains(m.Destination.To[0], "user@example.net") ||
		!strings.Contains(m.Body.Text, "Hello through SES.") {
		t.Fatalf("SES stored %+v", m)
	}
	if attempt["upstream_id"] != m.MessageID {
		t.Fatalf("attempt upstream_id %v, SES MessageId %s", attempt["upstream_id"], m.MessageID)
	}

	// The managed account allows 2 recipients an hour by default: of two
	// more messages one goes out and the other waits. Which one is
	// chance: their attempts run concurrently.
	var later []string
	for i := 0; i < 2; i++ {
		id, err := sendOne(c, "app@example.com", []string{"user@example.net"}, body)
		if err != nil {
			t.Fatal(err)
		}
		later = append(later, id)
	}
	statuses := func() map[string]int {
		n := map[string]int{}
		for _, id := range later {
			n[fmt.Sprint(d.email(id)["status"])]++
		}
		return n
	}
	for deadline := time.Now().Add(15 * time.Second); statuses()["sent"] == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("neither of two messages within the hourly limit was sent: %v", statuses())
		}
	}
	time.Sleep(500 * time.Millisecond)
	if n := statuses(); n["sent"] != 1 || n["pending"] != 1 {
		t.Fatalf("third message within the hour: the two later messages are %v, want one sent and one pending", n)
	}
}

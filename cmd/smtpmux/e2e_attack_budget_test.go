package main

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestAttackSendBudgetStarvedByStalledUpload (audit of issue 12, item 10):
// the HTTP send budget reserves a request's whole Content-Length before a
// byte of the body has arrived. One tenant that announces a large body and
// then sends nothing holds the budget for up to the 10-minute read timeout
// at no cost, and every other team's HTTP send is answered 503 meanwhile.
// Expected: a stalled upload does not take other teams' sends down (reserve
// bytes as they arrive, or bound the time a reservation may wait for its
// bytes). This test fails on the current code: the victim gets 503.
func TestAttackSendBudgetStarvedByStalledUpload(t *testing.T) {
	const op = "operator-token-0123456789"
	d := newDaemon(t, map[string]string{
		"":     fmt.Sprintf("operator_token = %q\n", op),
		"http": "max_send_bytes_in_flight = 1048576",
	})
	_, attackerKey := d.setupRelayExisting()

	// The victim: another team, with its own sending key.
	code, resp := d.apiAs(op, "POST", "/operator/teams", map[string]any{"name": "victim"})
	if code != 201 {
		t.Fatalf("create team: %d %v", code, resp)
	}
	rk, _ := data(resp)["root_key"].(map[string]any)
	victimRoot, _ := rk["key"].(string)
	code, resp = d.apiAs(victimRoot, "POST", "/api-keys", map[string]any{"name": "v", "type": "sending"})
	if code != 201 {
		t.Fatalf("victim key: %d %v", code, resp)
	}
	victimKey := data(resp)["key"].(string)

	// The attacker announces 1 MiB and stalls. Expect: 100-continue tells
	// us when the handler starts reading the body, i.e. after the
	// reservation, so nothing here waits on time.
	c, err := net.Dial("tcp", d.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /api/v1/emails/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: 1048576\r\nExpect: 100-continue\r\n\r\n", attackerKey)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(line, "100") {
		t.Fatalf("no 100 Continue for the stalled upload: %q %v", line, err)
	}
	if _, err := c.Write([]byte("{")); err != nil {
		t.Fatal(err)
	}

	// The victim's small send (no subject, so nothing is queued: a 422
	// shows it got past the budget; 503 is the starvation).
	code, resp = d.apiAs(victimKey, "POST", "/emails/send",
		map[string]any{"from": "v@example.com", "to": "r@example.net", "text_body": "hi"})
	if code == 503 {
		t.Fatalf("another team's stalled 1-byte upload starves this team's HTTP sends: %d %v", code, resp)
	}
	if code != 422 {
		t.Fatalf("victim send: %d %v (want 422 for the missing subject)", code, resp)
	}
}

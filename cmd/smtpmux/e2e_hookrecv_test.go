package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/admin/webhook"
)

// hookRecorder is a webhook endpoint that checks every delivery's
// signature and keeps the events. The daemon must allow private webhook
// targets.
type hookRecorder struct {
	mu     sync.Mutex
	secret string
	events []map[string]any
}

// subscribeHook creates a webhook for types at a new local endpoint.
func subscribeHook(t *testing.T, d *proc, types ...string) *hookRecorder {
	t.Helper()
	h := &hookRecorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if err := webhook.VerifyRequest(h.secret, body, r.Header, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("webhook signature: %v", err)
			w.WriteHeader(400)
			return
		}
		var ev map[string]any
		json.Unmarshal(body, &ev)
		h.events = append(h.events, ev)
	}))
	t.Cleanup(srv.Close)
	code, resp := d.api("POST", "/webhooks", map[string]any{"name": "hook", "url": srv.URL, "event_types": types})
	if code != 201 {
		t.Fatalf("webhook: %d %v", code, resp)
	}
	h.mu.Lock()
	h.secret, _ = data(resp)["secret"].(string)
	h.mu.Unlock()
	return h
}

// wait returns the data of the first event of type typ whose data
// satisfies match, polling until deadline.
func (h *hookRecorder) wait(t *testing.T, typ string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		h.mu.Lock()
		for _, ev := range h.events {
			if d, _ := ev["data"].(map[string]any); ev["type"] == typ && match(d) {
				h.mu.Unlock()
				return d
			}
		}
		var seen []string
		for _, ev := range h.events {
			b, _ := json.Marshal(ev)
			seen = append(seen, string(b))
		}
		h.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %s event matched; got:\n%s", typ, strings.Join(seen, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

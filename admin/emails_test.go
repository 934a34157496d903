package admin

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

func TestGetEmail(t *testing.T) {
	e := newEnv(t)
	start := time.Date(2026, 3, 1, 12, 0, 5, 0, time.UTC)
	m := &store.Message{
		ID: store.NewID(store.PrefixMessage), TeamID: e.team.ID, CredentialID: e.rootKey.ID, Source: "smtp",
		From: "app@example.com", Subject: "Hello", Size: 1234,
		Recipients: []store.Recipient{
			{Address: "a@example.net", Status: state.MessageSent, Code: 250, Reply: "250 2.0.0 Ok", ProviderID: e.managed.ID},
			{Address: "b@example.net", Status: state.MessageRejected, Code: 550, Reply: "550 5.1.1 no such user"},
		},
		Status: state.MessageSent, SentFromEmail: "app@example.com", State: store.StateDone,
		Attempts: []store.Attempt{
			{N: 1, ProviderID: e.managed.ID, ProviderType: store.TypeManagedSES, StartedAt: start, DurationMS: 40,
				Status: state.AttemptDeferred, Class: "transient", Code: 451, Reply: "451 4.3.0 try later",
				Routing: json.RawMessage(`{"in_scope":["x"],"picked":"x"}`)},
			{N: 2, ProviderID: e.managed.ID, StartedAt: start.Add(5 * time.Minute), DurationMS: 35,
				Status: state.AttemptPartial, Code: 250, Reply: "250 2.0.0 Ok: queued as ABC", UpstreamID: "ABC"},
		},
		CreatedAt: start.Add(-time.Second), UpdatedAt: start.Add(5 * time.Minute),
		NextAttemptAt: start,
	}
	if err := e.st.Enqueue(m, []byte("Subject: Hello\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	r := e.do("GET", "/api/v1/emails/"+m.ID, nil)
	if r.Code != 200 {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	for path, want := range map[string]any{
		"data.id": m.ID, "data.status": "sent", "data.from": "app@example.com", "data.subject": "Hello",
		"data.sent_from_email": "app@example.com", "data.reason": nil, "data.created_at": "2026-03-01T12:00:04Z",
		"data.recipients.0.email": "a@example.net", "data.recipients.0.status": "sent", "data.recipients.0.code": 250.0,
		"data.recipients.1.status": "rejected", "data.recipients.1.reply": "550 5.1.1 no such user",
		"data.attempts.0.number": 1.0, "data.attempts.0.provider_id": e.managed.ID, "data.attempts.0.started_at": "2026-03-01T12:00:05Z",
		"data.attempts.0.duration_ms": 40.0, "data.attempts.0.status": "deferred", "data.attempts.0.class": "transient",
		"data.attempts.0.code": 451.0, "data.attempts.0.reply": "451 4.3.0 try later", "data.attempts.0.routing.picked": "x",
		"data.attempts.1.upstream_id": "ABC", "data.attempts.1.routing": nil, "data.attempts.1.class": nil,
	} {
		if got := r.get(path); got != want {
			t.Errorf("%s = %#v, want %#v", path, got, want)
		}
	}
	expectErr(t, e.do("GET", "/api/v1/emails/"+store.NewID(store.PrefixMessage), nil), 404, "not_found", "")
}

// TestGetEmailExpandsRoutingSet: an attempt that stored its routing
// explanation by reference to its candidate set (relay/routeset.go) is
// shown whole — in scope, eligible with weights, exclusions, the pick —
// and one whose set retention dropped shows its stored decision.
func TestGetEmailExpandsRoutingSet(t *testing.T) {
	e := newEnv(t)
	set := `[{"provider_id":"dprov_a","weight":70},{"provider_id":"dprov_b","weight":30},{"provider_id":"dprov_c","weight":100}]`
	if err := e.st.PutRouteSet(e.team.ID, "20260301", "h1", []byte(set)); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 1, 12, 0, 5, 0, time.UTC)
	m := &store.Message{
		ID: store.NewID(store.PrefixMessage), TeamID: e.team.ID, CredentialID: e.rootKey.ID, Source: "smtp",
		From: "app@example.com", Recipients: []store.Recipient{{Address: "a@example.net", Status: state.MessagePending}},
		Status: state.MessagePending, State: store.StateQueued, CreatedAt: start, UpdatedAt: start, NextAttemptAt: start,
		Attempts: []store.Attempt{
			{N: 1, ProviderID: "dprov_b", StartedAt: start, Status: state.AttemptDeferred,
				Routing: json.RawMessage(`{"scope_type":"all","set":"20260301/h1","excluded":[{"provider_id":"dprov_c","reason":"over_quota"}],"draw":80,"total_weight":100,"picked":"dprov_b"}`)},
			{N: 2, ProviderID: "dprov_a", StartedAt: start, Status: state.AttemptDeferred,
				Routing: json.RawMessage(`{"scope_type":"all","set":"20260101/gone","draw":3,"total_weight":200,"picked":"dprov_a"}`)},
		},
	}
	if err := e.st.Enqueue(m, []byte("Subject: x\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	r := e.do("GET", "/api/v1/emails/"+m.ID, nil)
	if r.Code != 200 {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	for path, want := range map[string]any{
		"data.attempts.0.routing.scope_type": "all", "data.attempts.0.routing.in_scope.2": "dprov_c",
		"data.attempts.0.routing.eligible.0.provider_id": "dprov_a", "data.attempts.0.routing.eligible.0.weight": 70.0,
		"data.attempts.0.routing.eligible.1.provider_id": "dprov_b", "data.attempts.0.routing.excluded.0.reason": "over_quota",
		"data.attempts.0.routing.picked": "dprov_b", "data.attempts.0.routing.draw": 80.0, "data.attempts.0.routing.set": nil,
		"data.attempts.1.routing.picked": "dprov_a", "data.attempts.1.routing.set": "20260101/gone",
	} {
		if got := r.get(path); got != want {
			t.Errorf("%s = %#v, want %#v", path, got, want)
		}
	}
	if got := r.get("data.attempts.0.routing.eligible.2"); got != nil {
		t.Errorf("an excluded provider is listed eligible: %#v", got)
	}
}

package store

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func newHook(team string) *Webhook {
	return &Webhook{ID: NewID(PrefixWebhook), TeamID: team, URL: "https://hooks.example.com/", EventTypes: []string{"message.delivered"},
		Enabled: true, SecretSealed: []byte("sealed")}
}

func TestWebhookCRUD(t *testing.T) {
	s, _ := openTest(t)
	a, b := newHook("team_a"), newHook("team_a")
	if err := s.CreateWebhook(a, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateWebhook(b, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateWebhook(newHook("team_a"), 2); !errors.Is(err, ErrLimit) {
		t.Fatalf("third webhook: %v", err)
	}
	if err := s.CreateWebhook(newHook("team_b"), 2); err != nil {
		t.Fatalf("another team's limit is its own: %v", err)
	}
	if _, err := s.Webhook("team_b", a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cross-team read: %v", err)
	}
	if hs, _ := s.Webhooks("team_a"); len(hs) != 2 || hs[0].ID != a.ID || !hs[0].Wants("message.delivered") || hs[0].Wants("message.bounced") {
		t.Fatalf("list %+v", hs)
	}
	w, err := s.UpdateWebhook("team_a", a.ID, 1, func(w *Webhook) error { w.Enabled = false; w.TeamID = "team_x"; return nil })
	if err != nil || w.Version != 2 || w.TeamID != "team_a" || w.Wants("message.delivered") {
		t.Fatalf("update %+v %v", w, err)
	}
	if _, err := s.UpdateWebhook("team_a", a.ID, 1, func(*Webhook) error { return nil }); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale If-Match: %v", err)
	}
	if err := s.DeleteWebhook("team_b", a.ID, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cross-team delete: %v", err)
	}
	if err := s.DeleteWebhook("team_a", a.ID, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WebhookByID(a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatal("deleted webhook still there")
	}
}

func newDelivery(hook string, at time.Time) *WebhookDelivery {
	return &WebhookDelivery{ID: NewIDAt(PrefixDelivery, at), WebhookID: hook, TeamID: "team_a", EventID: NewID(PrefixEvent),
		EventType: "message.delivered", Event: []byte(`{"id":"evt"}`), Status: DeliveryPending, NextAttemptAt: at, CreatedAt: at}
}

func TestWebhookDeliveries(t *testing.T) {
	s, _ := openTest(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var ds []*WebhookDelivery
	for i := range 5 {
		ds = append(ds, newDelivery("twhk_a", t0.Add(time.Duration(i)*time.Minute)))
	}
	ds = append(ds, newDelivery("twhk_b", t0))
	if err := s.EnqueueWebhookDeliveries(ds); err != nil {
		t.Fatal(err)
	}
	// Due: in due order, the skip function sees the webhook.
	ids, next, err := s.DueWebhookDeliveries(t0.Add(2*time.Minute), 10, func(id, hook string) bool { return hook == "twhk_b" })
	if err != nil || len(ids) != 3 || ids[0] != ds[0].ID || !next.Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("due %v %v %v", ids, next, err)
	}
	// Finishing one removes it from the due index; rescheduling moves it.
	if _, err := s.UpdateWebhookDelivery(ds[0].ID, func(d *WebhookDelivery) error { d.Status = DeliverySucceeded; return nil }); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Depths(); err != nil || d.WebhookPending != 5 {
		t.Fatalf("backlog after one of 6 succeeded: %+v %v, want 5 pending", d, err)
	}
	if _, err := s.UpdateWebhookDelivery(ds[1].ID, func(d *WebhookDelivery) error { d.NextAttemptAt = t0.Add(time.Hour); return nil }); err != nil {
		t.Fatal(err)
	}
	if ids, _, _ := s.DueWebhookDeliveries(t0.Add(2*time.Minute), 10, nil); len(ids) != 2 || ids[0] != ds[5].ID && ids[1] != ds[5].ID {
		t.Fatalf("due after updates %v", ids)
	}
	// Listing: newest first, per webhook, with a cursor and a status filter.
	page, more, _ := s.WebhookDeliveries("twhk_a", "", "", 2)
	if len(page) != 2 || !more || page[0].ID != ds[4].ID || page[1].ID != ds[3].ID {
		t.Fatalf("page 1 %v", ids)
	}
	page, more, _ = s.WebhookDeliveries("twhk_a", page[1].ID, "", 10)
	if len(page) != 3 || more || page[2].ID != ds[0].ID {
		t.Fatalf("page 2 %d %v", len(page), more)
	}
	if page, _, _ := s.WebhookDeliveries("twhk_a", "", DeliverySucceeded, 10); len(page) != 1 || page[0].ID != ds[0].ID {
		t.Fatal("status filter")
	}
	if page, _, _ := s.WebhookDeliveries("twhk_", "", "", 10); len(page) != 0 {
		t.Fatal("a prefix of a webhook ID matched")
	}
}

func TestSweepWebhookDeliveries(t *testing.T) {
	s, _ := openTest(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var ds []*WebhookDelivery
	for i := range 7 {
		ds = append(ds, newDelivery(fmt.Sprintf("twhk_%d", i%2), t0.Add(time.Duration(i)*time.Hour)))
	}
	if err := s.EnqueueWebhookDeliveries(ds); err != nil {
		t.Fatal(err)
	}
	cut := t0.Add(4*time.Hour + time.Minute) // the first five are older
	total := 0
	for {
		n, more, err := s.SweepWebhookDeliveries(cut, 2)
		if err != nil {
			t.Fatal(err)
		}
		total += n
		if !more {
			break
		}
	}
	if total != 5 {
		t.Fatalf("swept %d", total)
	}
	if ids, _, _ := s.DueWebhookDeliveries(t0.Add(24*time.Hour), 10, nil); len(ids) != 2 {
		t.Fatalf("due entries left: %v", ids)
	}
	if page, _, _ := s.WebhookDeliveries("twhk_0", "", "", 10); len(page) != 1 || page[0].ID != ds[6].ID {
		t.Fatalf("index left: %d", len(page))
	}
}

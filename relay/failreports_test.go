package relay

import (
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// finishedFailed stores a finished message of the harness's team from
// s@example.com with one refused recipient.
func (h *harness) finishedFailed() *store.Message {
	h.t.Helper()
	now := time.Now().UTC()
	m := &store.Message{ID: store.NewID(store.PrefixMessage), TeamID: h.team, CredentialID: h.keyID, Source: "smtp",
		Scope: store.Scope{Type: "all"}, From: "s@example.com", Status: state.MessageRejected, CreatedAt: now, UpdatedAt: now,
		Recipients: []store.Recipient{{Address: "gone@example.net", Status: state.MessageRejected, Code: 550, Reply: "550 5.1.1 no such user"}}}
	if err := h.store.RecordFinished(m); err != nil {
		h.t.Fatal(err)
	}
	return m
}

// TestFailureReportLimitAndScope: past the per-team limit reports are
// skipped (rate_limited); a message gets at most one report (a second
// enqueue for the same original is a duplicate, refused in the store); a
// report goes only through the team's own providers, never the managed
// account, and none is sent when only the managed account is in scope.
func TestFailureReportLimitAndScope(t *testing.T) {
	h := newHarness(t, nil)
	managed := h.addProviderWith(&store.Provider{Managed: true})
	fr := newFailureReporter(h.srv, 2)
	all := store.Scope{Type: "all"}
	hdr := []byte("Subject: x\r\n")

	m1 := h.finishedFailed()
	if got := fr.send(m1, all, hdr); got != reportSent {
		t.Fatalf("first: %s", got)
	}
	if got := fr.send(m1, all, hdr); got != reportDuplicate {
		t.Fatalf("same original again: %s", got)
	}
	stored, err := h.store.Message(m1.ID)
	if err != nil || stored.FailureReportID == "" {
		t.Fatalf("original: %v %+v", err, stored)
	}
	rep, err := h.store.Message(stored.FailureReportID)
	if err != nil {
		t.Fatal(err)
	}
	if rep.From != "" || rep.Source != SourceFailureReport || len(rep.Recipients) != 1 || rep.Recipients[0].Address != "s@example.com" ||
		rep.Scope.Type != "providers" || strings.Join(rep.Scope.ProviderPublicIDs, ",") != h.provID {
		t.Fatalf("report record: %+v", rep)
	}
	// The duplicate did not count: one more is allowed, then none.
	if got := fr.send(h.finishedFailed(), all, hdr); got != reportSent {
		t.Fatalf("second: %s", got)
	}
	if got := fr.send(h.finishedFailed(), all, hdr); got != reportRateLimited {
		t.Fatalf("past the limit: %s", got)
	}
	onlyManaged := store.Scope{Type: "providers", ProviderPublicIDs: []string{managed}}
	if got := newFailureReporter(h.srv, 10).send(h.finishedFailed(), onlyManaged, hdr); got != reportNoOwnProvider {
		t.Fatalf("managed only: %s", got)
	}
}

// TestFailureReportPrecheck: the decision before an attempt's result is
// stored reads the credential's opt-in now, and refuses null senders,
// reports and revoked keys.
func TestFailureReportPrecheck(t *testing.T) {
	h := newHarness(t, nil)
	fr := newFailureReporter(h.srv, 10)
	m := &store.Message{TeamID: h.team, CredentialID: h.keyID, Source: "smtp", From: "s@example.com"}
	if _, skip := fr.precheck(m); skip != reportNotOptedIn {
		t.Fatalf("default: %q", skip)
	}
	setKey := func(fn func(k *store.APIKey)) {
		if _, err := h.store.UpdateKey(h.team, h.keyID, func(k *store.APIKey) error { fn(k); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	setKey(func(k *store.APIKey) { k.FailureReports = true })
	if sc, skip := fr.precheck(m); skip != "" || sc.Type != "all" {
		t.Fatalf("opted in: %q %v", skip, sc)
	}
	null := *m
	null.From = ""
	if _, skip := fr.precheck(&null); skip != reportNullSender {
		t.Fatalf("null sender: %q", skip)
	}
	rep := *m
	rep.Source = SourceFailureReport
	if _, skip := fr.precheck(&rep); skip != reportOfReport {
		t.Fatalf("a report: %q", skip)
	}
	other := *m
	other.TeamID = store.NewID(store.PrefixTeam)
	if _, skip := fr.precheck(&other); skip != reportNotOptedIn {
		t.Fatalf("another team's message naming this key: %q", skip)
	}
	setKey(func(k *store.APIKey) { now := time.Now(); k.RevokedAt = &now })
	if _, skip := fr.precheck(m); skip != reportInactive {
		t.Fatalf("revoked: %q", skip)
	}

	mb := &store.Mailbox{ID: store.NewID(store.PrefixMailbox), TeamID: h.team, Address: "box@example.com",
		SendScope: store.Scope{Type: "group", GroupPublicIDs: []string{"dgrp_x"}}, CreatedAt: time.Now()}
	if err := h.store.CreateMailbox(mb); err != nil {
		t.Fatal(err)
	}
	fromBox := &store.Message{TeamID: h.team, CredentialID: "mbxpw_x", MailboxID: mb.ID, Source: "http", From: "box@example.com"}
	if _, skip := fr.precheck(fromBox); skip != reportNotOptedIn {
		t.Fatalf("mailbox default: %q", skip)
	}
	setBox := func(fn func(m *store.Mailbox)) {
		if _, err := h.store.UpdateMailbox(h.team, mb.ID, 0, func(m *store.Mailbox) error { fn(m); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	setBox(func(m *store.Mailbox) { m.FailureReports = true })
	if sc, skip := fr.precheck(fromBox); skip != "" || sc.Type != "group" {
		t.Fatalf("mailbox opted in: %q %v", skip, sc)
	}
	setBox(func(m *store.Mailbox) { m.Suspended = true })
	if _, skip := fr.precheck(fromBox); skip != reportInactive {
		t.Fatalf("suspended mailbox: %q", skip)
	}
}

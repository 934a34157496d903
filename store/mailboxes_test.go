package store

import (
	"errors"
	"testing"
	"time"
)

func newMailbox(t *testing.T, s *Store, teamID, addr string) *Mailbox {
	t.Helper()
	m := &Mailbox{ID: NewID(PrefixMailbox), TeamID: teamID, Address: addr, SendScope: Scope{Type: "all"}, CreatedAt: time.Now()}
	if err := s.CreateMailbox(m); err != nil {
		t.Fatal(err)
	}
	return m
}

// newPassword stores a password of m and returns it with its secret.
func newPassword(t *testing.T, s *Store, m *Mailbox) (*MailboxPassword, string) {
	t.Helper()
	secret := NewSecret(SecretPrefixSending)
	p := &MailboxPassword{ID: NewID(PrefixPassword), MailboxID: m.ID, TeamID: m.TeamID, Name: "pw",
		Prefix: secret[:12], Hash: HashSecret(secret), CreatedAt: time.Now()}
	if err := s.CreateMailboxPassword(p); err != nil {
		t.Fatal(err)
	}
	return p, secret
}

func TestMailboxAddressUniquePerTeam(t *testing.T) {
	s, _ := openTest(t)
	m := newMailbox(t, s, "t1", " Sales@Example.COM ")
	if m.Address != "sales@example.com" || m.Version != 1 {
		t.Fatalf("stored %+v", m)
	}
	dup := &Mailbox{ID: NewID(PrefixMailbox), TeamID: "t1", Address: "SALES@example.com"}
	if err := s.CreateMailbox(dup); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate address: %v", err)
	}
	// Another team may use the same address.
	other := newMailbox(t, s, "t2", "sales@example.com")
	if got, err := s.MailboxByAddress("t1", "Sales@example.com"); err != nil || got.ID != m.ID {
		t.Fatalf("by address = %+v, %v", got, err)
	}
	if got, err := s.MailboxByAddress("t2", "sales@example.com"); err != nil || got.ID != other.ID {
		t.Fatalf("other team by address = %+v, %v", got, err)
	}
	if _, err := s.TeamMailbox("t2", m.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other team's mailbox: %v", err)
	}
	if ms, _ := s.Mailboxes("t1"); len(ms) != 1 {
		t.Fatalf("list = %v", ms)
	}

	// Changing the address moves the index; taking a used one conflicts.
	second := newMailbox(t, s, "t1", "support@example.com")
	if _, err := s.UpdateMailbox("t1", second.ID, 0, func(x *Mailbox) error { x.Address = "sales@example.com"; return nil }); !errors.Is(err, ErrConflict) {
		t.Fatalf("taking a used address: %v", err)
	}
	up, err := s.UpdateMailbox("t1", second.ID, 1, func(x *Mailbox) error { x.Address = "Help@Example.com"; return nil })
	if err != nil || up.Address != "help@example.com" || up.Version != 2 {
		t.Fatalf("update = %+v, %v", up, err)
	}
	if _, err := s.MailboxByAddress("t1", "support@example.com"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old address still indexed: %v", err)
	}
	if err := s.CreateMailbox(&Mailbox{ID: NewID(PrefixMailbox), TeamID: "t1", Address: "support@example.com"}); err != nil {
		t.Fatalf("freed address: %v", err)
	}
	if _, err := s.UpdateMailbox("t1", second.ID, 1, func(*Mailbox) error { return nil }); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale version: %v", err)
	}
	if _, err := s.UpdateMailbox("t2", second.ID, 0, func(*Mailbox) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other team update: %v", err)
	}

	// Deleting frees the address.
	if err := s.DeleteMailbox("t2", m.ID, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other team delete: %v", err)
	}
	if err := s.DeleteMailbox("t1", m.ID, 0); err != nil {
		t.Fatal(err)
	}
	newMailbox(t, s, "t1", "sales@example.com")
}

func TestCredentialLookups(t *testing.T) {
	s, _ := openTest(t)
	m := newMailbox(t, s, "t1", "App@Example.com")
	if _, err := s.UpdateMailbox("t1", m.ID, 0, func(x *Mailbox) error {
		x.SendScope = Scope{Type: "group", GroupPublicIDs: []string{"dgrp_x"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	pw, secret := newPassword(t, s, m)
	keySecret := NewSecret(SecretPrefixSending)
	k := &APIKey{ID: NewID(PrefixKey), TeamID: "t1", Type: KeySending, Hash: HashSecret(keySecret), SendScope: Scope{Type: "all"}}
	if err := s.CreateKey(k); err != nil {
		t.Fatal(err)
	}

	c, err := s.CredentialBySecret(secret)
	if err != nil || c.Kind != CredKindMailboxPassword || c.ID != pw.ID || c.TeamID != "t1" || c.MailboxID != m.ID ||
		c.MailboxAddress != "app@example.com" || c.Scope.Type != "group" || c.KeyType != "" || !c.Active {
		t.Fatalf("password credential = %+v, %v", c, err)
	}
	c, err = s.CredentialBySecret(keySecret)
	if err != nil || c.Kind != CredKindKey || c.ID != k.ID || c.KeyType != KeySending || c.Scope.Type != "all" || !c.Active || c.MailboxID != "" {
		t.Fatalf("key credential = %+v, %v", c, err)
	}
	// KeyBySecret does not mistake a password for a key.
	if _, err := s.KeyBySecret(secret); !errors.Is(err, ErrNotFound) {
		t.Fatalf("KeyBySecret(password) = %v", err)
	}
	for _, bad := range []string{"", secret + "x", NewSecret(SecretPrefixSending)} {
		if _, err := s.CredentialBySecret(bad); !errors.Is(err, ErrNotFound) {
			t.Fatalf("CredentialBySecret(%q) = %v", bad, err)
		}
	}
	if c, err := s.CredentialByID(CredKindMailboxPassword, pw.ID); err != nil || !c.Active || c.MailboxAddress != "app@example.com" {
		t.Fatalf("by id = %+v, %v", c, err)
	}
	if c, err := s.CredentialByID(CredKindKey, k.ID); err != nil || !c.Active {
		t.Fatalf("key by id = %+v, %v", c, err)
	}
	for _, tc := range [][2]string{{"bogus", k.ID}, {CredKindKey, pw.ID}, {CredKindMailboxPassword, k.ID}, {CredKindKey, "key_missing"}} {
		if _, err := s.CredentialByID(tc[0], tc[1]); !errors.Is(err, ErrNotFound) {
			t.Fatalf("CredentialByID(%v) = %v", tc, err)
		}
	}

	active := func(kind, id, secret string) bool {
		t.Helper()
		a, err := s.CredentialBySecret(secret)
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.CredentialByID(kind, id)
		if err != nil {
			t.Fatal(err)
		}
		if a.Active != b.Active {
			t.Fatalf("lookups disagree: %+v vs %+v", a, b)
		}
		return a.Active
	}
	// Suspending the mailbox deactivates its passwords; resuming restores.
	suspend := func(v bool) {
		if _, err := s.UpdateMailbox("t1", m.ID, 0, func(x *Mailbox) error { x.Suspended = v; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	suspend(true)
	if active(CredKindMailboxPassword, pw.ID, secret) {
		t.Fatal("suspended mailbox's password active")
	}
	suspend(false)
	if !active(CredKindMailboxPassword, pw.ID, secret) {
		t.Fatal("resumed mailbox's password inactive")
	}
	// Revoking is immediate and keeps the first time.
	first := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.RevokeMailboxPassword("t2", m.ID, pw.ID, first); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other team revoke: %v", err)
	}
	if _, err := s.RevokeMailboxPassword("t1", "mbx_other", pw.ID, first); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke through another mailbox: %v", err)
	}
	if r, err := s.RevokeMailboxPassword("t1", m.ID, pw.ID, first); err != nil || !r.RevokedAt.Equal(first) {
		t.Fatalf("revoke = %+v, %v", r, err)
	}
	if r, _ := s.RevokeMailboxPassword("t1", m.ID, pw.ID, first.Add(time.Hour)); !r.RevokedAt.Equal(first) {
		t.Fatalf("second revoke moved the time: %v", r.RevokedAt)
	}
	if active(CredKindMailboxPassword, pw.ID, secret) {
		t.Fatal("revoked password active")
	}
	// A revoked key is inactive too.
	if _, err := s.UpdateKey("t1", k.ID, func(k *APIKey) error { now := time.Now(); k.RevokedAt = &now; return nil }); err != nil {
		t.Fatal(err)
	}
	if active(CredKindKey, k.ID, keySecret) {
		t.Fatal("revoked key active")
	}

	// Deleting the mailbox removes its passwords and their index entries.
	pw2, secret2 := newPassword(t, s, m)
	if list, err := s.MailboxPasswords("t1", m.ID); err != nil || len(list) != 2 {
		t.Fatalf("passwords = %v, %v", list, err)
	}
	if _, err := s.MailboxPasswords("t2", m.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other team's passwords: %v", err)
	}
	if err := s.DeleteMailbox("t1", m.ID, 0); err != nil {
		t.Fatal(err)
	}
	for _, sec := range []string{secret, secret2} {
		if _, err := s.CredentialBySecret(sec); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted mailbox's password still resolves: %v", err)
		}
	}
	if _, err := s.CredentialByID(CredKindMailboxPassword, pw2.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted password by id: %v", err)
	}
	if _, err := s.MailboxPassword(pw.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("password record survived: %v", err)
	}
	// No password can be added to a missing or foreign mailbox.
	other := newMailbox(t, s, "t2", "x@example.com")
	orphan := &MailboxPassword{ID: NewID(PrefixPassword), MailboxID: m.ID, TeamID: "t1", Hash: HashSecret("x")}
	if err := s.CreateMailboxPassword(orphan); !errors.Is(err, ErrNotFound) {
		t.Fatalf("password for deleted mailbox: %v", err)
	}
	orphan.MailboxID = other.ID
	if err := s.CreateMailboxPassword(orphan); !errors.Is(err, ErrNotFound) {
		t.Fatalf("password for other team's mailbox: %v", err)
	}
}

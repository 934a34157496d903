package store

import (
	"reflect"
	"testing"
	"time"
)

// TestCredentialRecheckDecodesOnce: re-resolving an unchanged sending key
// (what an SMTP session does before every transaction) decodes its record
// once, not per call (issue 19), and every kind of write to the key —
// a scope change, a revocation, a last-use time — is seen by the very
// next lookup: the cache matches stored bytes, so it is never stale.
func TestCredentialRecheckDecodesOnce(t *testing.T) {
	s, _ := openTest(t)
	secret := NewSecret(SecretPrefixSending)
	k := &APIKey{ID: NewID(PrefixKey), TeamID: "t1", Type: KeySending, Hash: HashSecret(secret),
		SendScope: Scope{Type: "all"}, CreatedAt: time.Now()}
	if err := s.CreateKey(k); err != nil {
		t.Fatal(err)
	}
	h := HashSecret(secret)
	for range 10 {
		if c, err := s.CredentialByHash(h); err != nil || !c.Active || c.Scope.Type != "all" {
			t.Fatalf("lookup: %+v %v", c, err)
		}
	}
	s.keyRecs.mu.Lock()
	hits := s.keyRecs.hits
	s.keyRecs.mu.Unlock()
	if hits != 9 {
		t.Fatalf("10 lookups of an unchanged key: %d served without decoding, want 9", hits)
	}
	c, err := s.CredentialByHash(h)
	if err != nil {
		t.Fatal(err)
	}
	// A caller changing its copy does not change the next caller's.
	c.Scope.ProviderPublicIDs = append(c.Scope.ProviderPublicIDs, "dprv_x")
	if _, err := s.UpdateKey("t1", k.ID, func(x *APIKey) error {
		x.SendScope = Scope{Type: "providers", ProviderPublicIDs: []string{"dprv_a"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if c, err := s.CredentialByHash(h); err != nil || c.Scope.Type != "providers" || len(c.Scope.ProviderPublicIDs) != 1 {
		t.Fatalf("after a scope change: %+v %v", c, err)
	}
	if err := s.TouchKey(k.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if c, err := s.CredentialByHash(h); err != nil || !c.Active {
		t.Fatalf("after a last-use write: %+v %v", c, err)
	}
	now := time.Now()
	if _, err := s.UpdateKey("t1", k.ID, func(x *APIKey) error { x.RevokedAt = &now; return nil }); err != nil {
		t.Fatal(err)
	}
	if c, err := s.CredentialByHash(h); err != nil || c.Active {
		t.Fatalf("after a revocation: %+v %v", c, err)
	}
}

// TestTeamReadDecodesOnce: the team read before every attempt decodes an
// unchanged team once, a caller editing what it got (every field filled,
// so a new pointer field left shared fails here) changes nothing for the
// next reader, and a write is seen at once.
func TestTeamReadDecodesOnce(t *testing.T) {
	s, _ := openTest(t)
	var team Team
	fill(reflect.ValueOf(&team).Elem())
	team.ID, team.Name = NewID(PrefixTeam), "acme"
	if err := s.PutTeam(&team); err != nil {
		t.Fatal(err)
	}
	first, err := s.Team(team.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := *first
	want.ManagedHourlyLimit, want.ManagedDailyLimit, want.ProviderLimit = cloneInt(first.ManagedHourlyLimit), cloneInt(first.ManagedDailyLimit), cloneInt(first.ProviderLimit)
	scribble(reflect.ValueOf(first).Elem())
	second, err := s.Team(team.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*second, want) {
		t.Fatalf("a caller's edit reached the next reader:\n%+v\nwant\n%+v", *second, want)
	}
	if s.teamRecs.hits != 1 {
		t.Fatalf("two reads of an unchanged team: %d served without decoding, want 1", s.teamRecs.hits)
	}
	limit := 5
	second.ProviderLimit = &limit
	if err := s.PutTeam(second); err != nil {
		t.Fatal(err)
	}
	if third, err := s.Team(team.ID); err != nil || third.ProviderLimit == nil || *third.ProviderLimit != 5 {
		t.Fatalf("after a write: %+v %v", third, err)
	}
}

// TestMailboxCredentialCacheNeverStale: a mailbox password re-resolved
// through the decode caches (password and mailbox) sees the mailbox's scope
// change, its suspension, the password's revocation and the mailbox's
// deletion on the very next lookup, and a caller writing into the scope it
// got (in place, not only appending) changes nothing for the next caller.
func TestMailboxCredentialCacheNeverStale(t *testing.T) {
	s, _ := openTest(t)
	m := newMailbox(t, s, "t1", "a@example.com")
	if _, err := s.UpdateMailbox("t1", m.ID, 0, func(x *Mailbox) error {
		x.SendScope = Scope{Type: "providers", ProviderPublicIDs: []string{"dprv_a"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	p, secret := newPassword(t, s, m)
	h := HashSecret(secret)
	lookup := func(what string) *Credential {
		t.Helper()
		c, err := s.CredentialByHash(h)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return c
	}
	for range 3 {
		c := lookup("unchanged")
		if !c.Active || c.TeamID != "t1" || c.MailboxAddress != "a@example.com" || c.Scope.ProviderPublicIDs[0] != "dprv_a" {
			t.Fatalf("unchanged: %+v", c)
		}
		c.Scope.ProviderPublicIDs[0] = "dprv_evil" // in place
		c.Scope.GroupPublicIDs = append(c.Scope.GroupPublicIDs, "grp_evil")
	}
	if s.mbxRecs.hits == 0 || s.pwRecs.hits == 0 {
		t.Fatalf("cache not used: %d mailbox and %d password hits", s.mbxRecs.hits, s.pwRecs.hits)
	}
	if c, err := s.CredentialByID(CredKindMailboxPassword, p.ID); err != nil || c.Scope.ProviderPublicIDs[0] != "dprv_a" || len(c.Scope.GroupPublicIDs) != 0 {
		t.Fatalf("a caller's edit reached the next lookup: %+v %v", c, err)
	}
	if _, err := s.UpdateMailbox("t1", m.ID, 0, func(x *Mailbox) error {
		x.SendScope = Scope{Type: "providers", ProviderPublicIDs: []string{"dprv_b"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if c := lookup("scope change"); c.Scope.ProviderPublicIDs[0] != "dprv_b" {
		t.Fatalf("after a scope change: %+v", c)
	}
	if _, err := s.UpdateMailbox("t1", m.ID, 0, func(x *Mailbox) error { x.Suspended = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if c := lookup("suspension"); c.Active {
		t.Fatalf("suspended mailbox's password still active: %+v", c)
	}
	if _, err := s.UpdateMailbox("t1", m.ID, 0, func(x *Mailbox) error { x.Suspended = false; return nil }); err != nil {
		t.Fatal(err)
	}
	if c := lookup("unsuspension"); !c.Active {
		t.Fatalf("unsuspended: %+v", c)
	}
	if _, err := s.RevokeMailboxPassword("t1", m.ID, p.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if c, err := s.CredentialByHash(h); err == nil && c.Active {
		t.Fatalf("revoked password still active: %+v", c)
	}
	if err := s.DeleteMailbox("t1", m.ID, 0); err != nil {
		t.Fatal(err)
	}
	if c, err := s.CredentialByID(CredKindMailboxPassword, p.ID); err == nil && c.Active {
		t.Fatalf("deleted mailbox's password still active: %+v", c)
	}
}

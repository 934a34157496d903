package store

import (
	"bytes"
	"errors"
	"github.com/smtpmux/smtpmux/internal/state"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// teamSeed is one team's records of every team-owned kind: a group, a
// provider in it and one outside it, a root key and a sending key whose
// scope names the group, a mailbox scoped to the group with a password, a
// webhook and a domain.
type teamSeed struct {
	team, group, password                         string
	providers, keys, mailboxes, webhooks, domains []string
}

func seedTeam(t *testing.T, s *Store, team string) teamSeed {
	t.Helper()
	now := time.Now().UTC()
	sd := teamSeed{team: team}
	sd.group = newGroup(t, s, team, "g").ID
	for i, gid := range []string{sd.group, ""} {
		p := &Provider{ID: NewID(PrefixProvider), TeamID: team, Name: "p" + string(rune('0'+i)), Type: TypeSMTP,
			Status: state.ProviderActive, GroupID: gid, CreatedAt: now, UpdatedAt: now}
		if err := s.CreateProvider(p); err != nil {
			t.Fatal(err)
		}
		sd.providers = append(sd.providers, p.ID)
	}
	for _, sc := range []Scope{{Type: "all"}, {Type: "group", GroupPublicIDs: []string{sd.group}}} {
		secret := NewSecret(SecretPrefixSending)
		k := &APIKey{ID: NewID(PrefixKey), TeamID: team, Name: "k", Type: KeySending, Prefix: secret[:12],
			Hash: HashSecret(secret), SendScope: sc, CreatedAt: now}
		if err := s.CreateKey(k); err != nil {
			t.Fatal(err)
		}
		sd.keys = append(sd.keys, k.ID)
	}
	m := &Mailbox{ID: NewID(PrefixMailbox), TeamID: team, Address: "a@" + strings.ToLower(team) + ".example",
		SendScope: Scope{Type: "group", GroupPublicIDs: []string{sd.group}}, CreatedAt: now}
	if err := s.CreateMailbox(m); err != nil {
		t.Fatal(err)
	}
	sd.mailboxes = []string{m.ID}
	pw, _ := newPassword(t, s, m)
	sd.password = pw.ID
	w := &Webhook{ID: NewID(PrefixWebhook), TeamID: team, URL: "https://hooks.example/x", Enabled: true, CreatedAt: now}
	if err := s.CreateWebhook(w, 5); err != nil {
		t.Fatal(err)
	}
	sd.webhooks = []string{w.ID}
	d := &Domain{ID: NewID(PrefixDomain), TeamID: team, Domain: strings.ToLower(team) + ".example", Status: DomainPending, CreatedAt: now}
	if err := s.CreateDomain(d, 5); err != nil {
		t.Fatal(err)
	}
	sd.domains = []string{d.ID}
	return sd
}

func idsOf[T any, P teamRecord[T]](recs []P, err error) ([]string, error) {
	var out []string
	for _, r := range recs {
		id, _ := r.owner()
		out = append(out, id)
	}
	return out, err
}

// checkTeamLists fails t unless every list of sd's team answers exactly
// sd's records, in creation order.
func checkTeamLists(t *testing.T, s *Store, sd teamSeed) {
	t.Helper()
	check := func(what string, want []string) func([]string, error) {
		return func(got []string, err error) {
			t.Helper()
			if err != nil || !slices.Equal(got, want) {
				t.Errorf("team %s %s: %v %v, want %v", sd.team, what, got, err, want)
			}
		}
	}
	check("providers", sd.providers)(idsOf(s.Providers(sd.team)))
	check("keys", sd.keys)(idsOf(s.Keys(sd.team)))
	check("groups", []string{sd.group})(idsOf(s.Groups(sd.team)))
	check("mailboxes", sd.mailboxes)(idsOf(s.Mailboxes(sd.team)))
	check("webhooks", sd.webhooks)(idsOf(s.Webhooks(sd.team)))
	check("domains", sd.domains)(idsOf(s.Domains(sd.team)))
	pws, err := s.MailboxPasswords(sd.team, sd.mailboxes[0])
	if err != nil || len(pws) != 1 || pws[0].ID != sd.password {
		t.Errorf("team %s passwords: %v %v", sd.team, pws, err)
	}
}

// TestTeamListsReadOnlyTheTeam: a team's lists, its group deletion and its
// webhook count read its own records only. Another team's records are
// made undecodable below the store; before the team index, every list
// walked (and decoded) the whole bucket and failed on them.
func TestTeamListsReadOnlyTheTeam(t *testing.T) {
	s, path := openTest(t)
	a, b := seedTeam(t, s, "team_a"), seedTeam(t, s, "team_b")
	s.Close()
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		for bucket, ids := range map[string][]string{
			"providers": b.providers, "keys": b.keys, "groups": {b.group}, "mailboxes": b.mailboxes,
			"webhooks": b.webhooks, "domains": b.domains, "mailbox_passwords": {b.password},
		} {
			for _, id := range ids {
				if err := tx.Bucket([]byte(bucket)).Put([]byte(id), []byte(`{"team_id":"team_b",`)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkTeamLists(t, s, a)
	if _, err := s.Providers(b.team); err == nil {
		t.Fatal("the other team's records decode: the test proves nothing")
	}
	w := &Webhook{ID: NewID(PrefixWebhook), TeamID: a.team, URL: "https://hooks.example/y", CreatedAt: time.Now()}
	if err := s.CreateWebhook(w, 2); err != nil {
		t.Fatalf("second webhook of team a: %v", err)
	}
	w.ID = NewID(PrefixWebhook)
	if err := s.CreateWebhook(w, 2); !errors.Is(err, ErrLimit) {
		t.Fatalf("third webhook of team a with max 2: %v, want ErrLimit", err)
	}
	res, err := s.DeleteGroup(a.team, a.group, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.MovedProviders, a.providers[:1]) || !slices.Equal(res.AffectedKeys, a.keys[1:]) ||
		!slices.Equal(res.AffectedMailboxes, a.mailboxes) {
		t.Fatalf("group deletion: %+v", res)
	}
	if err := s.DeleteMailbox(a.team, a.mailboxes[0], 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MailboxPassword(a.password); !errors.Is(err, ErrNotFound) {
		t.Fatalf("password of the deleted mailbox: %v", err)
	}
}

// TestTeamIndexFollowsWrites: creates enter the index, deletes leave it,
// updates cannot move a record to another team, and a team whose ID is a
// prefix of another's sees only its own records.
func TestTeamIndexFollowsWrites(t *testing.T) {
	s, _ := openTest(t)
	a, ab := seedTeam(t, s, "team_a"), seedTeam(t, s, "team_ab")
	checkTeamLists(t, s, a)
	checkTeamLists(t, s, ab)
	p, err := s.UpdateProvider(a.team, a.providers[1], 1, func(p *Provider) error {
		p.TeamID, p.ID, p.Name = ab.team, "dprov_other", "renamed"
		return nil
	})
	if err != nil || p.TeamID != a.team || p.ID != a.providers[1] || p.Version != 2 || p.Name != "renamed" {
		t.Fatalf("update that tried to move the record: %+v %v", p, err)
	}
	if _, err := s.UpdateProvider(a.team, a.providers[1], 1, func(*Provider) error { return nil }); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale If-Match: %v", err)
	}
	if err := s.DeleteProvider(ab.team, a.providers[1], 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete through another team: %v", err)
	}
	if err := s.DeleteProvider(a.team, a.providers[1], 2); err != nil {
		t.Fatal(err)
	}
	a.providers = a.providers[:1]
	checkTeamLists(t, s, a)
	checkTeamLists(t, s, ab)
	if all, err := s.Providers(""); err != nil || len(all) != 3 {
		t.Fatalf("all providers: %d %v", len(all), err)
	}
}

// TestMigrateTeamIndexes opens a version 3 file — the layout before the
// team indexes, with records of two teams and a queued message — and
// finds every record in its team's lists, the message and its body
// untouched, and the indexes maintained from then on.
func TestMigrateTeamIndexes(t *testing.T) {
	s, path := openTest(t)
	a, b := seedTeam(t, s, "team_a"), seedTeam(t, s, "team_b")
	msg := newMsg(time.Now())
	if err := s.Enqueue(msg, []byte("Subject: kept\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Back to the version 3 layout: the same records, no team indexes.
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bProvidersByTeam, bKeysByTeam, bGroupsByTeam, bMailboxesByTeam,
			bWebhooksByTeam, bDomainsByTeam, bMailboxPwByMailbox} {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		return tx.Bucket(bMeta).Put(keySchemaVersion, be64(3))
	})
	var log bytes.Buffer
	s, err := Open(path, time.Second, logTo(&log))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(log.String(), `"msg":"store schema migrated","from":3,"to":4`) {
		t.Fatalf("log:\n%s", log.String())
	}
	checkTeamLists(t, s, a)
	checkTeamLists(t, s, b)
	got, err := s.Message(msg.ID)
	if err != nil || got.From != msg.From || got.State != StateQueued {
		t.Fatalf("message after the migration: %+v %v", got, err)
	}
	if body, err := s.Body(msg.ID); err != nil || string(body) != "Subject: kept\r\n\r\nx\r\n" {
		t.Fatalf("body after the migration: %q %v", body, err)
	}
	// Writes on the migrated file keep the indexes right.
	if err := s.DeleteMailbox(a.team, a.mailboxes[0], 0); err != nil {
		t.Fatal(err)
	}
	if ms, err := s.Mailboxes(a.team); err != nil || len(ms) != 0 {
		t.Fatalf("mailboxes after the delete: %v %v", ms, err)
	}
	c := seedTeam(t, s, "team_c")
	checkTeamLists(t, s, c)
	checkTeamLists(t, s, b)
}

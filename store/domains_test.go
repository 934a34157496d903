package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func openTemp(t *testing.T) *Store {
	t.Helper()
	st, err := Open(filepath.Join(t.TempDir(), "d.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestDomainNameIndex(t *testing.T) {
	st := openTemp(t)
	add := func(team, name string, max int) (*Domain, error) {
		d := &Domain{ID: NewID(PrefixDomain), TeamID: team, Domain: name, Status: DomainPending}
		return d, st.CreateDomain(d, max)
	}
	a, err := add("team_a", " Example.ORG. ", 2)
	if err != nil || a.Domain != "example.org" || a.Version != 1 {
		t.Fatalf("create: %v %+v", err, a)
	}
	if _, err := add("team_a", "example.org", 2); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := add("team_b", "example.org", 2); err != nil {
		t.Fatalf("same name, other team: %v", err)
	}
	if _, err := add("team_a", "two.example", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := add("team_a", "three.example", 2); !errors.Is(err, ErrLimit) {
		t.Fatalf("limit: %v", err)
	}
	if d, err := st.DomainByName("team_a", "EXAMPLE.org."); err != nil || d.ID != a.ID {
		t.Fatalf("by name: %v %+v", err, d)
	}
	if _, err := st.Domain("team_b", a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other team's domain: %v", err)
	}
	// An update cannot rename (the index would go stale).
	u, err := st.UpdateDomain("team_a", a.ID, 1, func(d *Domain) error { d.Domain, d.Status = "evil.example", DomainVerified; return nil })
	if err != nil || u.Domain != "example.org" || u.Status != DomainVerified || u.Version != 2 {
		t.Fatalf("update: %v %+v", err, u)
	}
	if _, err := st.UpdateDomain("team_a", a.ID, 1, func(*Domain) error { return nil }); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale If-Match: %v", err)
	}
	if err := st.DeleteDomain("team_b", a.ID, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete by other team: %v", err)
	}
	if err := st.DeleteDomain("team_a", a.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DomainByName("team_a", "example.org"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("name still indexed: %v", err)
	}
	if all, _ := st.Domains(""); len(all) != 2 {
		t.Fatalf("all domains: %d", len(all))
	}
}

func TestTrackingLinksAndClicks(t *testing.T) {
	st := openTemp(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	links := []TrackingLink{
		{Token: "t0", TeamID: "team_a", MessageID: "eml_1", Index: 0, URL: "https://a.example/", CreatedAt: now},
		{Token: "t1", TeamID: "team_a", MessageID: "eml_1", Index: 1, URL: "https://b.example/", CreatedAt: now},
	}
	if err := st.SaveTrackingLinks(links); err != nil {
		t.Fatal(err)
	}
	l, err := st.RecordClick("t0", now.Add(time.Minute), string(make([]byte, 400)))
	if err != nil || l.Clicks != 1 || len(l.LastUserAgent) != maxUserAgent || !l.FirstClickAt.Equal(now.Add(time.Minute)) {
		t.Fatalf("click: %v %+v", err, l)
	}
	// Saving again (a retry) keeps the click count.
	if err := st.SaveTrackingLinks(links); err != nil {
		t.Fatal(err)
	}
	l, _ = st.RecordClick("t0", now.Add(2*time.Minute), "ua")
	if l.Clicks != 2 || !l.FirstClickAt.Equal(now.Add(time.Minute)) || l.LastUserAgent != "ua" {
		t.Fatalf("second click: %+v", l)
	}
	if _, err := st.RecordClick("nope", now, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown token: %v", err)
	}
	if ls, _ := st.TrackingLinks("eml_1"); len(ls) != 2 {
		t.Fatalf("links of message: %d", len(ls))
	}
}

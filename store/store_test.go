package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
)

func openTest(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func newMsg(due time.Time) *Message {
	return &Message{ID: NewID(PrefixMessage), TeamID: "team_x", From: "a@example.com",
		Recipients: []Recipient{{Address: "b@example.com", Status: state.MessagePending}}, Status: state.MessagePending,
		NextAttemptAt: due, CreatedAt: due}
}

func TestEnqueueSurvivesReopen(t *testing.T) {
	s, path := openTest(t)
	now := time.Now()
	m := newMsg(now)
	if err := s.Enqueue(m, []byte("Subject: hi\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.Message(m.ID)
	if err != nil || got.State != StateQueued || got.From != "a@example.com" {
		t.Fatalf("reopened message = %+v, %v", got, err)
	}
	body, err := s2.Body(m.ID)
	if err != nil || string(body) != "Subject: hi\r\n\r\nbody\r\n" {
		t.Fatalf("body = %q, %v", body, err)
	}
	ids, _, err := s2.Due(now, 10, nil)
	if err != nil || len(ids) != 1 || ids[0] != m.ID {
		t.Fatalf("due = %v, %v", ids, err)
	}
}

func TestSecondOpenFails(t *testing.T) {
	_, path := openTest(t)
	if _, err := Open(path, 100*time.Millisecond); err == nil {
		t.Fatal("a second Open of the same file must fail while the first holds it")
	}
}

func TestDueIndexFollowsState(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now()
	m := newMsg(now)
	later := newMsg(now.Add(time.Hour))
	for _, x := range []*Message{m, later} {
		if err := s.Enqueue(x, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	ids, next, _ := s.Due(now, 10, nil)
	if len(ids) != 1 || ids[0] != m.ID || !next.Equal(later.NextAttemptAt.Truncate(0)) && next.UnixNano() != later.NextAttemptAt.UnixNano() {
		t.Fatalf("due = %v next %v", ids, next)
	}
	// Claim: leaves the due index, enters the in-flight index.
	if _, err := s.UpdateMessage(m.ID, func(m *Message) error { m.State = StateInflight; return nil }); err != nil {
		t.Fatal(err)
	}
	if ids, _, _ := s.Due(now, 10, nil); len(ids) != 0 {
		t.Fatalf("claimed message still due: %v", ids)
	}
	if inf, _ := s.Inflight(); len(inf) != 1 || inf[0] != m.ID {
		t.Fatalf("inflight = %v", inf)
	}
	// Defer: back in the due index at the new time.
	retry := now.Add(5 * time.Minute)
	if _, err := s.UpdateMessage(m.ID, func(m *Message) error { m.State, m.NextAttemptAt = StateQueued, retry; return nil }); err != nil {
		t.Fatal(err)
	}
	if ids, _, _ := s.Due(retry, 10, nil); len(ids) != 1 {
		t.Fatalf("deferred message not due at retry time: %v", ids)
	}
	if inf, _ := s.Inflight(); len(inf) != 0 {
		t.Fatalf("inflight after defer = %v", inf)
	}
	// Done: in no index.
	if _, err := s.UpdateMessage(m.ID, func(m *Message) error { m.State = StateDone; return nil }); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.Depths(); d.Queued != 1 || d.InFlight != 0 {
		t.Fatalf("depth = %d queued %d inflight, want 1/0", d.Queued, d.InFlight)
	}
	// skip and limit
	if ids, _, _ := s.Due(now.Add(2*time.Hour), 10, func(id []byte) bool { return string(id) == later.ID }); len(ids) != 0 {
		t.Fatalf("skip ignored: %v", ids)
	}
}

// TestGroupCommitIsolatesFailures runs many concurrent writes where some
// fail: the failing ones get their error, all others commit.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	s, _ := openTest(t)
	var wg sync.WaitGroup
	errs := make([]error, 200)
	msgs := make([]*Message, 200)
	for i := range msgs {
		msgs[i] = newMsg(time.Now())
		if err := s.Enqueue(msgs[i], []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	boom := errors.New("boom")
	for i := range msgs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, errs[i] = s.UpdateMessage(msgs[i].ID, func(m *Message) error {
				if i%7 == 0 {
					return boom
				}
				m.Subject = fmt.Sprint("s", i)
				return nil
			})
		}(i)
	}
	wg.Wait()
	for i, m := range msgs {
		got, err := s.Message(m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if i%7 == 0 {
			if !errors.Is(errs[i], boom) || got.Subject != "" {
				t.Fatalf("%d: err %v subject %q, want boom and unchanged", i, errs[i], got.Subject)
			}
		} else if errs[i] != nil || got.Subject != fmt.Sprint("s", i) {
			t.Fatalf("%d: err %v subject %q", i, errs[i], got.Subject)
		}
	}
}

func TestKeysBySecret(t *testing.T) {
	s, _ := openTest(t)
	secret := NewSecret(SecretPrefixSending)
	k := &APIKey{ID: NewID(PrefixKey), TeamID: "t1", Type: KeySending, Hash: HashSecret(secret), CreatedAt: time.Now()}
	if err := s.CreateKey(k); err != nil {
		t.Fatal(err)
	}
	got, err := s.KeyBySecret(secret)
	if err != nil || got.ID != k.ID {
		t.Fatalf("KeyBySecret = %v, %v", got, err)
	}
	if _, err := s.KeyBySecret(secret + "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, err := s.UpdateKey("t2", k.ID, func(*APIKey) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other team's key must be not found, got %v", err)
	}
}

func TestProviderVersionAndGen(t *testing.T) {
	s, _ := openTest(t)
	p := &Provider{ID: NewID(PrefixProvider), TeamID: "t1", Type: TypeSMTP, Status: state.ProviderActive}
	g0 := s.ProvidersGen()
	if err := s.CreateProvider(p); err != nil {
		t.Fatal(err)
	}
	if s.ProvidersGen() == g0 {
		t.Fatal("gen must move on create")
	}
	if _, err := s.UpdateProvider("t1", p.ID, 7, func(*Provider) error { return nil }); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale version: %v", err)
	}
	up, err := s.UpdateProvider("t1", p.ID, 1, func(p *Provider) error { p.Name = "x"; return nil })
	if err != nil || up.Version != 2 || up.Name != "x" {
		t.Fatalf("update = %+v, %v", up, err)
	}
	if err := s.DeleteProvider("t2", p.ID, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other team delete: %v", err)
	}
}

func TestSealer(t *testing.T) {
	a, _ := NewSealer("0123456789abcdef0123")
	b, _ := NewSealer("another-key-entirely")
	sealed := a.Seal("hunter2")
	if got, err := a.Open(sealed); err != nil || got != "hunter2" {
		t.Fatalf("open = %q, %v", got, err)
	}
	if _, err := b.Open(sealed); !errors.Is(err, ErrUnseal) {
		t.Fatalf("wrong key must fail, got %v", err)
	}
	if _, err := NewSealer("short"); err == nil {
		t.Fatal("short secret_key accepted")
	}
}

func TestIDsSortByCreation(t *testing.T) {
	prev := NewID(PrefixMessage)
	for i := 0; i < 10000; i++ {
		id := NewID(PrefixMessage)
		if id <= prev {
			t.Fatalf("%s made after %s sorts before it", id, prev)
		}
		prev = id
	}
}

func TestIDs(t *testing.T) {
	a, b := NewID(PrefixMessage), NewID(PrefixMessage)
	if a == b || !ValidID(PrefixMessage, a) || len(a) != 28 {
		t.Fatalf("ids %q %q", a, b)
	}
	for _, bad := range []string{"", "eml_", "eml_../../etc/passwd000000000", "dprov_0123456789abcdefghjkmnpq", "eml_0123456789ABCDEFGHJKMNPQ"} {
		if ValidID(PrefixMessage, bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
	}
}

func TestFinishedBodyIsRetained(t *testing.T) {
	s, _ := openTest(t)
	m := newMsg(time.Now())
	if err := s.Enqueue(m, []byte("the body")); err != nil {
		t.Fatal(err)
	}
	done, err := s.UpdateMessage(m.ID, func(m *Message) error { m.State = StateDone; return nil })
	if err != nil {
		t.Fatal(err)
	}
	body, err := s.OpenBody(done)
	if err != nil || string(body.Bytes()) != "the body" {
		t.Fatalf("retained body: %v", err)
	}
	body.Release()
}

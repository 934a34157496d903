package store

import (
	"errors"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestRotateKeyGrace: after a rotation with grace both secrets resolve
// (the old one with its deadline), a second rotation drops the first
// secret from the key and the cred_hash index, a sweep past the deadline
// drops the second, and a revoked key cannot be rotated.
func TestRotateKeyGrace(t *testing.T) {
	s := openTemp(t)
	now := time.Now().UTC()
	k := &APIKey{ID: NewID(PrefixKey), TeamID: "team_a", Type: KeySending, Hash: HashSecret("smx_mbx_first_secret_000"), CreatedAt: now}
	if err := s.CreateKey(k); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateKey("team_b", k.ID, HashSecret("x"), "p", now, time.Hour); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another team's key: %v", err)
	}
	if _, err := s.RotateKey("team_a", k.ID, HashSecret("smx_mbx_second_secret_00"), "smx_mbx_sec", now, time.Hour); err != nil {
		t.Fatal(err)
	}
	c, err := s.CredentialBySecret("smx_mbx_first_secret_000")
	if err != nil || c.Expires == nil || !c.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("old secret in grace: %v %v", c, err)
	}
	if c, err := s.CredentialBySecret("smx_mbx_second_secret_00"); err != nil || c.Expires != nil {
		t.Fatalf("new secret: %v %v", c, err)
	}
	if _, err := s.RotateKey("team_a", k.ID, HashSecret("smx_mbx_third_secret_000"), "smx_mbx_thi", now, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.KeyBySecret("smx_mbx_first_secret_000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("first secret after a second rotation: %v", err)
	}
	if _, err := s.KeyBySecret("smx_mbx_second_secret_00"); err != nil {
		t.Fatalf("second secret in its grace: %v", err)
	}
	if n, err := s.SweepRotatedKeys(now.Add(30 * time.Minute)); n != 0 || err != nil {
		t.Fatalf("sweep within grace: %d %v", n, err)
	}
	if n, err := s.SweepRotatedKeys(now.Add(time.Hour)); n != 1 || err != nil {
		t.Fatalf("sweep after grace: %d %v", n, err)
	}
	for _, old := range []string{"smx_mbx_first_secret_000", "smx_mbx_second_secret_00"} {
		if err := s.view(func(tx *bolt.Tx) error {
			if tx.Bucket(bCredHash).Get(HashSecret(old)) != nil {
				t.Errorf("cred_hash still holds %s", old)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.KeyBySecret("smx_mbx_third_secret_000"); err != nil {
		t.Fatalf("current secret: %v", err)
	}
	if _, err := s.UpdateKey("team_a", k.ID, func(k *APIKey) error { k.RevokedAt = &now; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateKey("team_a", k.ID, HashSecret("y"), "p", now, 0); !errors.Is(err, ErrConflict) {
		t.Fatalf("revoked key: %v", err)
	}
}

// TestRotateKeyNoGrace: a rotation with grace 0 ends the old secret at
// once and removes it from the index.
func TestRotateKeyNoGrace(t *testing.T) {
	s := openTemp(t)
	k := &APIKey{ID: NewID(PrefixKey), TeamID: "team_a", Type: KeyRoot, Hash: HashSecret("smx_root_old_secret_0000")}
	if err := s.CreateKey(k); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateKey("team_a", k.ID, HashSecret("smx_root_new_secret_0000"), "smx_root_new", time.Now(), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CredentialBySecret("smx_root_old_secret_0000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old secret: %v", err)
	}
	if _, err := s.KeyBySecret("smx_root_new_secret_0000"); err != nil {
		t.Fatalf("new secret: %v", err)
	}
}

package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/smtpmux/smtpmux/store"
)

// schemaVersionOf reads the schema version of the store file at path.
func schemaVersionOf(t *testing.T, path string) uint64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v uint64
	db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("meta")); b != nil && len(b.Get([]byte("schema_version"))) == 8 {
			v = binary.BigEndian.Uint64(b.Get([]byte("schema_version")))
		}
		return nil
	})
	return v
}

// TestDowngradeByRestore walks the documented downgrade (systemd/README.md,
// "Upgrading"): a binary refuses a store a newer one migrated, saying so
// (not "is another smtpmux running?"), and restoring the backup taken
// before the upgrade puts a store it can open back in place.
func TestDowngradeByRestore(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	cfgPath := filepath.Join(dir, "config.toml")
	cfg := fmt.Sprintf("data_dir = %q\nsecret_key = \"upgrade-test-secret-0123456789\"\n[smtp]\nlisten = [%q]\n[http]\nlisten = %q\n",
		dataDir, freeAddr(t), freeAddr(t))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// The backup taken before the upgrade, at this binary's version.
	backup := filepath.Join(dir, "before-upgrade.db")
	st, err := store.Open(backup, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	// The live store, as a newer binary left it.
	live := filepath.Join(dataDir, "smtpmux.db")
	if st, err = store.Open(live, time.Second); err != nil {
		t.Fatal(err)
	}
	st.Close()
	db, err := bolt.Open(live, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], store.SchemaVersion+1)
		return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), v[:])
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	var out, errOut bytes.Buffer
	if code := run([]string{"serve", "--config", cfgPath}, &out, &errOut); code != 1 {
		t.Fatalf("serve on a newer store: exit %d\n%s", code, errOut.String())
	}
	want := fmt.Sprintf("the file is at version %d, this binary knows up to %d", store.SchemaVersion+1, store.SchemaVersion)
	if !strings.Contains(errOut.String(), "store schema is newer than this binary supports") ||
		!strings.Contains(errOut.String(), want) || strings.Contains(errOut.String(), "another smtpmux") {
		t.Fatalf("serve on a newer store must say so:\n%s", errOut.String())
	}
	if v := schemaVersionOf(t, live); v != store.SchemaVersion+1 {
		t.Fatalf("the refused store was changed to version %d", v)
	}

	out.Reset()
	errOut.Reset()
	if code := run([]string{"restore", "--config", cfgPath, "--from", backup}, &out, &errOut); code != 0 {
		t.Fatalf("restore over a newer store: exit %d: %s", code, errOut.String())
	}
	if v := schemaVersionOf(t, live); v != store.SchemaVersion {
		t.Fatalf("after the restore the store is at version %d, want %d", v, store.SchemaVersion)
	}
	kept, _ := filepath.Glob(live + ".before-restore-*")
	if len(kept) != 1 || schemaVersionOf(t, kept[0]) != store.SchemaVersion+1 {
		t.Fatalf("the replaced store is not kept as it was: %v", kept)
	}
	if st, err = store.Open(live, time.Second); err != nil {
		t.Fatalf("the restored store does not open: %v", err)
	}
	st.Close()
}

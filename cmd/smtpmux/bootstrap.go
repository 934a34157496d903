package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/smtpmux/smtpmux/admin"
	"github.com/smtpmux/smtpmux/store"
)

// secretKey returns the configured secret_key, or the one generated into
// data_dir on first start (created 0600, never logged).
func secretKey(cfg *config) (string, error) {
	if cfg.secretKey != "" {
		return cfg.secretKey, nil
	}
	path := filepath.Join(cfg.dataDir, "secret.key")
	if b, err := os.ReadFile(path); err == nil {
		k := strings.TrimSpace(string(b))
		if len(k) < 16 {
			return "", fmt.Errorf("%s is too short; delete it only if no secrets were stored yet", path)
		}
		return k, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	k := hex.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(k + "\n"); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", err
	}
	return k, f.Close()
}

// bootstrap creates, on first start, the default team, its managed
// account, and its first root key (from the config, or generated and
// printed once to out). It is a no-op on later starts.
func bootstrap(st *store.Store, cfg *config, out io.Writer) error {
	now := time.Now().UTC()
	team, err := st.TeamByName("default")
	if errors.Is(err, store.ErrNotFound) {
		team = &store.Team{ID: store.NewID(store.PrefixTeam), Name: "default", CreatedAt: now}
		if err := st.PutTeam(team); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if err := ensureManaged(st, team, now); err != nil {
		return err
	}
	keys, err := st.Keys(team.ID)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.Type == store.KeyRoot {
			return nil
		}
	}
	secret, printed := cfg.bootstrapRootKey, false
	if secret == "" {
		secret, printed = store.NewSecret(store.SecretPrefixRoot), true
	}
	k := &store.APIKey{ID: store.NewID(store.PrefixKey), TeamID: team.ID, Name: "bootstrap", Type: store.KeyRoot,
		Prefix: secret[:12], Hash: store.HashSecret(secret), Permissions: []string{"*"},
		SendScope: store.Scope{Type: "all"}, CreatedAt: now}
	if err := st.CreateKey(k); err != nil {
		return err
	}
	if printed {
		// Printed once, to the terminal, never to the log.
		fmt.Fprintf(out, "\nsmtpmux: created the default team's root key (shown once, store it now):\n\n    %s\n\n", secret)
	}
	return nil
}

// ensureManaged gives a team its managed amazon_ses account, active.
func ensureManaged(st *store.Store, team *store.Team, now time.Time) error {
	ps, err := st.Providers(team.ID)
	if err != nil {
		return err
	}
	for _, p := range ps {
		if p.IsShared {
			return nil
		}
	}
	return st.CreateProvider(admin.ManagedProvider(team.ID, now))
}

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
	if k, err := readSecretKeyFile(path); err == nil || !errors.Is(err, os.ErrNotExist) {
		return k, err
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

// readSecretKeyFile reads a secret key file (data_dir/secret.key, or the
// one "backup --with-secret-key" wrote); os.ErrNotExist when absent.
func readSecretKeyFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	k := strings.TrimSpace(string(b))
	if len(k) < 16 {
		return "", fmt.Errorf("%s is too short; delete it only if no secrets were stored yet", path)
	}
	return k, nil
}

// bootstrap creates, on first start, the default team and its managed
// account. It is a no-op on later starts. The team's first root key is
// bootstrapRootKey's, once the listeners are up.
func bootstrap(st *store.Store, now time.Time) (*store.Team, error) {
	team, err := st.TeamByName("default")
	if errors.Is(err, store.ErrNotFound) {
		team = &store.Team{ID: store.NewID(store.PrefixTeam), Name: "default", CreatedAt: now}
		if err := st.PutTeam(team); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	return team, ensureManaged(st, team, now)
}

// firstTeam runs bootstrap once cluster-wide (single node: runs it) and
// returns the default team.
func (d *daemon) firstTeam() (*store.Team, error) {
	var team *store.Team
	err := d.once("bootstrap", func() bool { return bootstrapped(d.store) }, func() (err error) {
		team, err = bootstrap(d.store, time.Now().UTC())
		return err
	})
	return team, err
}

// bootstrapped reports whether the view holds the default team with its
// managed account: bootstrap would write nothing.
func bootstrapped(st *store.Store) bool {
	team, err := st.TeamByName("default")
	if err != nil {
		return false
	}
	ps, err := st.Providers(team.ID)
	if err != nil {
		return false
	}
	for _, p := range ps {
		if p.Managed {
			return true
		}
	}
	return false
}

// firstRootKey runs bootstrapRootKey once cluster-wide: of nodes that
// start together one creates the key (and prints it, when generated);
// the others find it and print nothing, since they do not have it.
func (d *daemon) firstRootKey(team *store.Team, out io.Writer) error {
	return d.once("bootstrap", func() bool { return hasRootKey(d.store, team.ID) },
		func() error { return bootstrapRootKey(d.store, team, d.cfg, out) })
}

// ensureManaged gives a team its managed amazon_ses account, active.
func ensureManaged(st *store.Store, team *store.Team, now time.Time) error {
	ps, err := st.Providers(team.ID)
	if err != nil {
		return err
	}
	for _, p := range ps {
		if p.Managed {
			return nil
		}
	}
	return st.CreateProvider(admin.ManagedProvider(team.ID, now))
}

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// The root key of a team is the one credential that can mint all others,
// so it must never be lost between its creation and its owner reading it.
// bootstrapRootKey runs only once every listener is bound: a first start
// that fails (the HTTP port taken, a bad certificate) creates none, and the
// next start prints one (or takes bootstrap_root_key). If it is lost all
// the same, "smtpmux keys reset-root" mints a new one offline.

// bootstrapRootKey gives the default team its first root key, when it has
// never had one: bootstrap_root_key from the config, or a generated key
// printed once to out (the terminal or journal, never the structured log).
func bootstrapRootKey(st *store.Store, team *store.Team, cfg *config, out io.Writer) error {
	if has, err := rootKeyIn(st, team.ID); err != nil || has {
		return err // revoked ones count too: after that, reset-root is the way
	}
	secret, printed := cfg.bootstrapRootKey, false
	if secret == "" {
		secret, printed = store.NewSecret(store.SecretPrefixRoot), true
	}
	if err := createRootKey(st, team, "bootstrap", secret, time.Now().UTC()); err != nil {
		return err
	}
	if printed {
		fmt.Fprintf(out, "\nsmtpmux: created the default team's root key (shown once, store it now):\n\n    %s\n\n", secret)
	}
	return nil
}

// rootKeyIn reports whether team has ever had a root key (revoked or not).
func rootKeyIn(st *store.Store, teamID string) (bool, error) {
	keys, err := st.Keys(teamID)
	if err != nil {
		return false, err
	}
	for _, k := range keys {
		if k.Type == store.KeyRoot {
			return true, nil
		}
	}
	return false, nil
}

// hasRootKey is rootKeyIn for a check that treats a read error as "no"
// (the caller then takes the lock and reads again).
func hasRootKey(st *store.Store, teamID string) bool {
	has, err := rootKeyIn(st, teamID)
	return err == nil && has
}

// createRootKey stores a root key with every permission for team.
func createRootKey(st *store.Store, team *store.Team, name, secret string, now time.Time) error {
	return st.CreateKey(&store.APIKey{ID: store.NewID(store.PrefixKey), TeamID: team.ID, Name: name, Type: store.KeyRoot,
		Prefix: secret[:12], Hash: store.HashSecret(secret), Permissions: []string{"*"},
		SendScope: store.Scope{Type: "all"}, CreatedAt: now})
}

// resetRootCmd is "smtpmux keys reset-root --data-dir DIR [--team NAME]":
// with the daemon stopped, it revokes the team's root keys and prints a
// new one. It works on the store file directly, so it needs no key and
// no running daemon: it is the way back for an operator who lost the key.
func resetRootCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys reset-root", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "the daemon's data_dir (required; the daemon must be stopped)")
	teamRef := fs.String("team", "default", "team name or id")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *dataDir == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: smtpmux keys reset-root --data-dir DIR [--team NAME|ID]  (with the daemon stopped)")
		return exitUsage
	}
	path := filepath.Join(*dataDir, "smtpmux.db")
	if _, err := os.Stat(path); err != nil {
		fmt.Fprintf(stderr, "keys reset-root: no store at %s: %v\n", path, err)
		return exitAPI
	}
	st, err := store.Open(path, time.Second, store.WithoutHistoryMover())
	if errors.Is(err, store.ErrInUse) {
		fmt.Fprintf(stderr, "keys reset-root: %s is in use: stop the daemon first (systemctl stop smtpmux)\n", path)
		return exitAPI
	}
	if err != nil {
		fmt.Fprintf(stderr, "keys reset-root: %v\n", err)
		return exitAPI
	}
	defer st.Close()
	team, err := st.TeamByName(*teamRef)
	if errors.Is(err, store.ErrNotFound) {
		team, err = st.Team(*teamRef)
	}
	if err != nil {
		fmt.Fprintf(stderr, "keys reset-root: team %q: %v\n", *teamRef, err)
		return exitAPI
	}
	now := time.Now().UTC()
	keys, err := st.Keys(team.ID)
	if err != nil {
		fmt.Fprintf(stderr, "keys reset-root: %v\n", err)
		return exitAPI
	}
	revoked := 0
	for _, k := range keys {
		if k.Type != store.KeyRoot || !k.Active() {
			continue
		}
		if _, err := st.UpdateKey(team.ID, k.ID, func(k *store.APIKey) error { k.RevokedAt = &now; return nil }); err != nil {
			fmt.Fprintf(stderr, "keys reset-root: revoking %s: %v\n", k.ID, err)
			return exitAPI
		}
		revoked++
	}
	secret := store.NewSecret(store.SecretPrefixRoot)
	if err := createRootKey(st, team, "reset-root "+now.Format(time.DateOnly), secret, now); err != nil {
		fmt.Fprintf(stderr, "keys reset-root: %v\n", err)
		return exitAPI
	}
	fmt.Fprintf(stderr, "revoked %d root key(s) of team %s; the new root key (shown once, store it now):\n", revoked, team.Name)
	fmt.Fprintln(stdout, secret)
	return exitOK
}

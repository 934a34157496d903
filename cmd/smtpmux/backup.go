package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// backupCmd downloads a snapshot from a running daemon (GET
// /api/v1/operator/backup, an operator route of admin):
// smtpmux backup --url http://127.0.0.1:8025 --out FILE (token from
// SMTPMUX_OPERATOR_TOKEN or --token).
func backupCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", envOr("SMTPMUX_URL", "http://127.0.0.1:8025"), "the daemon's HTTP address")
	token := fs.String("token", os.Getenv("SMTPMUX_OPERATOR_TOKEN"), "operator token")
	out := fs.String("out", "", "file to write (required)")
	withKey := fs.Bool("with-secret-key", false, "also write the daemon's secret key to OUT.key (mode 0600); without it the backup's provider secrets open only with the key the daemon has now")
	cfgPath := fs.String("config", "/etc/smtpmux/config.toml", "the daemon's config, to find its secret key (with --with-secret-key)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" {
		fmt.Fprintln(stderr, "backup: --out is required")
		return 2
	}
	if *token == "" {
		fmt.Fprintln(stderr, "backup: no operator token: pass --token or set SMTPMUX_OPERATOR_TOKEN to the daemon's operator_token (set it in the daemon's config first if it has none)")
		return 2
	}
	req, _ := http.NewRequest("GET", strings.TrimRight(*url, "/")+"/api/v1/operator/backup", nil)
	req.Header.Set("Authorization", "Bearer "+*token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "backup: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		fmt.Fprintf(stderr, "backup: %s: %s\n", resp.Status, b)
		return 1
	}
	tmp := *out + ".partial"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		fmt.Fprintf(stderr, "backup: %v\n", err)
		return 1
	}
	n, err := io.Copy(f, resp.Body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = store.CheckFile(tmp)
	}
	if err == nil && *withKey {
		err = writeBackupKey(*cfgPath, tmp, *out+".key")
	}
	if err != nil {
		os.Remove(tmp)
		fmt.Fprintf(stderr, "backup: %v\n", err)
		return 1
	}
	if err := os.Rename(tmp, *out); err != nil {
		fmt.Fprintf(stderr, "backup: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %d bytes to %s\n", n, *out)
	if *withKey {
		fmt.Fprintf(stdout, "wrote the secret key to %s (mode 0600: keep it apart from the backup, as safe as the daemon's own)\n", *out+".key")
	}
	return 0
}

// restoreCmd puts a backup in place of a stopped daemon's store:
// smtpmux restore --config FILE --from BACKUP. It refuses while the daemon
// holds the store, and keeps the replaced file next to it.
func restoreCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/smtpmux/config.toml", "the daemon's config file")
	from := fs.String("from", "", "backup file (required)")
	keyFile := fs.String("secret-key-file", "", "the secret key the backup was taken with (backup --with-secret-key wrote it to BACKUP.key)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *from == "" {
		fmt.Fprintln(stderr, "restore: --from is required")
		return 2
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintf(stderr, "config invalid: %v\n", err)
		return 1
	}
	if err := store.CheckFile(*from); err != nil {
		fmt.Fprintf(stderr, "restore: %s is not a usable store: %v\n", *from, err)
		return 1
	}
	// The key first: a store whose secrets the daemon cannot open is
	// refused before anything is replaced.
	installKey, err := restoreKey(cfg, *from, *keyFile)
	if err != nil {
		fmt.Fprintf(stderr, "restore: %v\nnothing was changed\n", err)
		return 1
	}
	if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
		fmt.Fprintf(stderr, "restore: %v\n", err)
		return 1
	}
	dst := filepath.Join(cfg.dataDir, "smtpmux.db")
	kept, err := store.Restore(*from, dst, time.Now())
	if kept != "" {
		fmt.Fprintf(stdout, "kept the previous store as %s\n", kept)
	}
	var inUse *store.InUseError
	if errors.As(err, &inUse) {
		fmt.Fprintf(stderr, "restore: %v (stop the daemon first)\n", err)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "restore: %v\n", err)
		return 1
	}
	// Run as root, restore must still leave the service user (who owns
	// data_dir) a store it can open.
	if err := chownLikeDir(dst, cfg.dataDir); err != nil {
		fmt.Fprintf(stderr, "restore: %v\n", err)
		return 1
	}
	if installKey != "" {
		kept, err := installSecretKey(cfg.dataDir, installKey, time.Now())
		if err == nil {
			err = chownLikeDir(filepath.Join(cfg.dataDir, "secret.key"), cfg.dataDir)
		}
		if err != nil {
			fmt.Fprintf(stderr, "restore: installing the secret key: %v\n", err)
			return 1
		}
		if kept != "" {
			fmt.Fprintf(stdout, "kept the previous secret key as %s\n", kept)
		}
		fmt.Fprintf(stdout, "installed the backup's secret key as %s\n", filepath.Join(cfg.dataDir, "secret.key"))
	}
	fmt.Fprintf(stdout, "restored %s\n", dst)
	return 0
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

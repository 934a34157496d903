package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// A backup holds provider passwords, DKIM keys and webhook secrets sealed
// with the daemon's secret key, which the store does not contain: restored
// on a new machine without that key, none of them opens. "backup
// --with-secret-key" writes the key beside the snapshot (mode 0600), and
// restore checks the key it will run with against the snapshot before it
// replaces anything.

// configuredSecretKey is the secret key the daemon of cfg runs with:
// secret_key (file or environment), else data_dir/secret.key. Unlike
// secretKey it never generates one; "" when there is none yet.
func configuredSecretKey(cfg *config) (string, error) {
	if cfg.secretKey != "" {
		return cfg.secretKey, nil
	}
	k, err := readSecretKeyFile(filepath.Join(cfg.dataDir, "secret.key"))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	return k, err
}

// checkKeyOpens reports whether key opens every sealed secret in the store
// file snap; the error names the first that it cannot.
func checkKeyOpens(snap, key string) (int, error) {
	sealer, err := store.NewSealer(key)
	if err != nil {
		return 0, err
	}
	return store.CheckSealedFile(snap, sealer)
}

// writeBackupKey writes the secret key of the daemon configured in cfgPath
// to keyOut (0600), once it has checked that the key opens the secrets of
// the snapshot just downloaded: a key that does not would be a useless
// backup found out only at the restore.
func writeBackupKey(cfgPath, snap, keyOut string) error {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return fmt.Errorf("--with-secret-key reads the daemon's secret key through its config: %w", err)
	}
	key, err := configuredSecretKey(cfg)
	if err != nil {
		return fmt.Errorf("reading the secret key (run as the service user or root): %w", err)
	}
	if key == "" {
		return fmt.Errorf("%s names no secret_key and %s has no secret.key: is --config the daemon's config?", cfgPath, cfg.dataDir)
	}
	if _, err := checkKeyOpens(snap, key); err != nil {
		return fmt.Errorf("the secret key of %s does not open the daemon's secrets (%w): is --config the daemon's config?", cfgPath, err)
	}
	return writeFileAtomic(keyOut, []byte(key+"\n"), 0o600)
}

// restoreKey decides the secret key a restore runs with and checks it
// against the snapshot from. keyFile is --secret-key-file ("" if not
// given). It returns the key to install as data_dir/secret.key ("" to
// leave that file alone), or an error saying what to do; nothing has been
// changed by then.
func restoreKey(cfg *config, from, keyFile string) (install string, err error) {
	key, err := configuredSecretKey(cfg)
	if err != nil {
		return "", err
	}
	if keyFile != "" {
		k, err := readSecretKeyFile(keyFile)
		if err != nil {
			return "", fmt.Errorf("--secret-key-file: %w", err)
		}
		if cfg.secretKey != "" && cfg.secretKey != k {
			return "", errors.New("--secret-key-file differs from the configured secret_key, which the daemon would use: " +
				"set secret_key (or SMTPMUX_SECRET_KEY) to the key in the file instead")
		}
		if cfg.secretKey == "" && k != key {
			install = k
		}
		key = k
	}
	if key == "" {
		// No key yet: the daemon would generate a new one, which opens
		// nothing sealed before.
		if _, err := store.CheckSealedFile(from, nil); err == nil {
			return "", nil
		} else if !errors.Is(err, store.ErrUnseal) {
			return "", err
		}
		return "", fmt.Errorf("%s holds sealed secrets and there is no secret key to open them: "+
			"pass --secret-key-file FILE (\"smtpmux backup --with-secret-key\" writes it) or set secret_key", from)
	}
	if _, err := checkKeyOpens(from, key); err != nil {
		if !errors.Is(err, store.ErrUnseal) {
			return "", err
		}
		return "", fmt.Errorf("the secret key the daemon would run with cannot open the secrets in %s (%v); "+
			"give the key it was taken with: --secret-key-file FILE (\"smtpmux backup --with-secret-key\" writes it), "+
			"or secret_key / SMTPMUX_SECRET_KEY", from, err)
	}
	return install, nil
}

// installSecretKey puts key in data_dir/secret.key, keeping a different
// one it replaces beside it.
func installSecretKey(dataDir, key string, stamp time.Time) (kept string, err error) {
	path := filepath.Join(dataDir, "secret.key")
	if _, err := os.Stat(path); err == nil {
		kept = path + ".before-restore-" + stamp.UTC().Format("20060102T150405Z")
		if err := os.Rename(path, kept); err != nil {
			return "", err
		}
	}
	return kept, writeFileAtomic(path, []byte(key+"\n"), 0o600)
}

// chownLikeDir gives path the owner and group of dir: a restore run as
// root must leave files the service user (who owns data_dir) can open.
func chownLikeDir(path, dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || os.Geteuid() != 0 {
		return nil // not root: whatever we create is already ours
	}
	return os.Chown(path, int(st.Uid), int(st.Gid))
}

package store

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// CheckSealedFile tries s on every sealed secret in the store file at path
// (provider passwords, SES secrets and OAuth tokens, DKIM keys, webhook
// secrets) and returns how many it opened, or the first it could not
// (wrapping ErrUnseal); a nil s opens none, so it finds whether there are
// any. The file is opened read-only and below the store,
// neither migrated nor refused for its schema, so a restore can check a
// backup taken by another version before putting it in place.
func CheckSealedFile(path string, s *Sealer) (int, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	opened := 0
	check := func(what string, sealed []byte) error {
		if len(sealed) == 0 {
			return nil
		}
		if s == nil {
			return fmt.Errorf("%s: %w", what, ErrUnseal)
		}
		if _, err := s.Open(sealed); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		opened++
		return nil
	}
	err = db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bProviders); b != nil {
			if err := b.ForEach(func(_, v []byte) error {
				var p Provider
				if err := jsonUnmarshal(v, &p); err != nil {
					return err
				}
				for _, f := range []struct {
					name   string
					sealed []byte
				}{{"SMTP password", p.SMTPPasswordSealed}, {"SES secret", p.SESSecretSealed}, {"OAuth token", p.OAuthTokenSealed}} {
					if err := check("provider "+p.ID+" "+f.name, f.sealed); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				return err
			}
		}
		if b := tx.Bucket(bDomains); b != nil {
			if err := b.ForEach(func(_, v []byte) error {
				var d Domain
				if err := jsonUnmarshal(v, &d); err != nil {
					return err
				}
				return check("domain "+d.Domain+" DKIM key", d.PrivateKeySealed)
			}); err != nil {
				return err
			}
		}
		if b := tx.Bucket(bWebhooks); b != nil {
			return b.ForEach(func(_, v []byte) error {
				var w Webhook
				if err := jsonUnmarshal(v, &w); err != nil {
					return err
				}
				return check("webhook "+w.ID+" secret", w.SecretSealed)
			})
		}
		return nil
	})
	return opened, err
}

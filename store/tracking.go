package store

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// bTrackingLinks maps a tracking token to the TrackingLink it stands for.
var bTrackingLinks = []byte("tracking_links")

// maxUserAgent bounds the stored user agent: it is client-chosen text.
const maxUserAgent = 256

// TrackingLink is one rewritten link of one message (SPEC §6, tracking
// domain): GET /t/<Token> redirects to URL and counts a click. Tokens are
// derived from the message ID and the link's index, so every attempt of a
// message produces the same tokens and the record is written once.
type TrackingLink struct {
	Token     string    `json:"token"`
	TeamID    string    `json:"team_id"`
	MessageID string    `json:"message_id"`
	Index     int       `json:"index"` // position among the message's trackable links, from 0
	URL       string    `json:"url"`   // the original absolute http(s) URL
	CreatedAt time.Time `json:"created_at"`
	// Host is the tracking domain (lower case) the link was issued for:
	// it redirects only on requests for that host. Links stored before
	// this field existed have none and redirect nowhere.
	Host string `json:"host,omitempty"`
	// ExpiresAt, when set, ends the redirect ([tracking] link_ttl).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`

	Clicks        int        `json:"clicks"`
	FirstClickAt  *time.Time `json:"first_click_at,omitempty"`
	LastClickAt   *time.Time `json:"last_click_at,omitempty"`
	LastUserAgent string     `json:"last_user_agent,omitempty"`
}

// SaveTrackingLinks stores the links that are not stored yet and leaves
// existing ones (and their click counts) alone. When every token is known
// already — a retry of the same message — it only reads, so retries cost
// no commit.
func (s *Store) SaveTrackingLinks(links []TrackingLink) error {
	var missing []TrackingLink
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bTrackingLinks)
		for _, l := range links {
			if b.Get([]byte(l.Token)) == nil {
				missing = append(missing, l)
			}
		}
		return nil
	})
	if err != nil || len(missing) == 0 {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bTrackingLinks)
		for i := range missing {
			// Another attempt may have written it since the read above.
			if b.Get([]byte(missing[i].Token)) != nil {
				continue
			}
			if err := putJSON(b, missing[i].Token, &missing[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// TrackingLinkByToken returns the link a token stands for, or ErrNotFound.
func (s *Store) TrackingLinkByToken(token string) (*TrackingLink, error) {
	var l TrackingLink
	if err := s.view(func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bTrackingLinks), token, &l) }); err != nil {
		return nil, err
	}
	return &l, nil
}

// RecordClick counts one click on token at time at and returns the
// updated link.
func (s *Store) RecordClick(token string, at time.Time, userAgent string) (*TrackingLink, error) {
	if len(userAgent) > maxUserAgent {
		userAgent = userAgent[:maxUserAgent]
	}
	var out TrackingLink
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bTrackingLinks)
		var l TrackingLink
		if err := getJSON(b, token, &l); err != nil {
			return err
		}
		at := at.UTC()
		l.Clicks++
		if l.FirstClickAt == nil {
			l.FirstClickAt = &at
		}
		l.LastClickAt, l.LastUserAgent = &at, userAgent
		out = l
		return putJSON(b, token, &l)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// TrackingLinks lists a message's tracking links in token order (tests and
// future reporting; it walks the bucket).
func (s *Store) TrackingLinks(messageID string) ([]*TrackingLink, error) {
	var out []*TrackingLink
	err := s.view(func(tx *bolt.Tx) error {
		return forEachJSON(tx.Bucket(bTrackingLinks), func(l *TrackingLink) {
			if l.MessageID == messageID {
				out = append(out, l)
			}
		})
	})
	return out, err
}

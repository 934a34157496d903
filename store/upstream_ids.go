package store

import (
	bolt "go.etcd.io/bbolt"
)

// bUpstreamIDs maps an Amazon SES MessageId to the message whose
// attempt SES accepted under it: "ses" ‖ 0 ‖ MessageId → message id. SES
// notifications (Bounce, Complaint, Delivery via SNS) name only that id,
// so without this index finding their message would be a scan. The key
// is not team-scoped because the managed account is one SES account
// shared by every team: the caller checks the message's team and
// provider against the endpoint the notification came in on.
var bUpstreamIDs = []byte("upstream_ids")

// upstreamKind is the index's namespace of a provider type: both kinds
// of SES account share SES's one MessageId space; other types are not
// indexed (nothing looks their ids up).
func upstreamKind(providerType string) string {
	switch providerType {
	case TypeSES, TypeManagedSES:
		return "ses"
	}
	return ""
}

func upstreamKey(kind, id string) []byte {
	return []byte(kind + "\x00" + id)
}

// upstreamIDs are the index keys of m's attempts.
func upstreamIDs(m *Message) map[string]bool {
	var out map[string]bool
	for _, a := range m.Attempts {
		if a.UpstreamID == "" {
			continue
		}
		if k := upstreamKind(a.ProviderType); k != "" {
			if out == nil {
				out = map[string]bool{}
			}
			out[string(upstreamKey(k, a.UpstreamID))] = true
		}
	}
	return out
}

// syncUpstreamIDs adds the index entries of attempts that gained an
// upstream id in this update (ids are never rewritten).
func syncUpstreamIDs(tx *bolt.Tx, old map[string]bool, m *Message) error {
	b := tx.Bucket(bUpstreamIDs)
	for k := range upstreamIDs(m) {
		if !old[k] {
			if err := b.Put([]byte(k), []byte(m.ID)); err != nil {
				return err
			}
		}
	}
	return nil
}

// unindexUpstreamIDs drops m's entries when m is deleted (retention).
func unindexUpstreamIDs(tx *bolt.Tx, m *Message) error {
	b := tx.Bucket(bUpstreamIDs)
	for k := range upstreamIDs(m) {
		if v := b.Get([]byte(k)); string(v) == m.ID {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
	}
	return nil
}

// MessageBySESID returns the message one of whose attempts Amazon SES
// (own or managed account) accepted as sesMessageID. ErrNotFound when
// none is known (never sent by this daemon, or deleted by retention).
func (s *Store) MessageBySESID(sesMessageID string) (*Message, error) {
	if sesMessageID == "" || len(sesMessageID) > 200 {
		return nil, ErrNotFound
	}
	var id string
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bUpstreamIDs).Get(upstreamKey("ses", sesMessageID))
		if v == nil {
			return ErrNotFound
		}
		id = string(v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.Message(id)
}

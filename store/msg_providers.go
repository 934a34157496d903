package store

// The main file's provider index, message first (issue 18: delivery with
// 200 providers in scope within 20 % of 2).
//
// The provider filter of the message log walks team ‖ 'p' ‖ provider ‖
// message id keys (bMsgByFilter): one region per provider, so a commit of
// claims spread over 200 providers wrote a leaf page per provider where 2
// providers shared two. In the main file, where every claim and result
// commits, a message's providers are kept instead in bMsgProviders under
// team ‖ 0x00 ‖ message id: the keys of the messages being delivered are
// adjacent (IDs start with the acceptance time), whatever their provider.
// A provider walk reads the main file's part by walking the team's keys
// there and taking those whose value names the provider: the main file
// holds the queue and the last minutes of finished mail, not the history.
// The day files, written by the mover in batches, keep the provider-first
// keys, which answer a provider walk over 30 days without a scan. Keys a
// file of an earlier version has in bMsgByFilter stay readable (the walk
// reads both) and go when their message is next written.

import (
	"bytes"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// bMsgProviders (main file) is team ‖ 0x00 ‖ message id → be64(CreatedAt
// unix nanos) ‖ each provider the message used (Message.UsedProvider),
// sorted, each followed by 0x00. Messages that used none have no key.
var bMsgProviders = []byte("msg_providers")

// providersValue is m's bMsgProviders value, nil when it used no provider.
func providersValue(m *Message) []byte {
	var ps []string
	for i := range m.Attempts {
		if p := m.Attempts[i].ProviderID; p != "" && !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	for i := range m.Recipients {
		if p := m.Recipients[i].ProviderID; p != "" && !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return nil
	}
	slices.Sort(ps)
	v := createdValue(m)
	for _, p := range ps {
		v = append(append(v, p...), 0)
	}
	return v
}

// syncProviders makes m's key in b say m's providers (m nil: the message
// is gone).
func syncProviders(b *bolt.Bucket, teamID, id string, m *Message) error {
	k := teamIndexKey(teamID, id)
	var v []byte
	if m != nil {
		v = providersValue(m)
	}
	cur := b.Get(k)
	switch {
	case v == nil && cur == nil:
		return nil
	case v == nil:
		return b.Delete(k)
	case bytes.Equal(cur, v):
		return nil
	}
	return b.Put(k, v)
}

// namesProvider reports whether a bMsgProviders value lists providerID.
func namesProvider(v []byte, providerID string) bool {
	if len(v) < 8 {
		return false
	}
	for v = v[8:]; len(v) > 0; {
		i := bytes.IndexByte(v, 0)
		if i < 0 {
			return false
		}
		if string(v[:i]) == providerID {
			return true
		}
		v = v[i+1:]
	}
	return false
}

// isProviderIndexKey reports whether k, a bMsgByFilter key of team, is a
// provider key (team ‖ 0x00 ‖ 'p' ‖ …) rather than a status key.
func isProviderIndexKey(k []byte, teamID string) bool {
	return len(k) > len(teamID)+1 && k[len(teamID)+1] == 'p'
}

package store

// The main file's provider index, message first (issue 18: delivery with
// 200 providers in scope within 20 % of 2).
//
// The provider filter of the message log walks team ‖ 'p' ‖ provider ‖
// message id keys (bMsgByFilter): one region per provider, so a commit of
// claims spread over 200 providers wrote a leaf page per provider where 2
// providers shared two. In the main file, where every claim and result
// commits, a message's providers are kept instead in the value of its
// team index key (bMsgByTeam, team ‖ 0x00 ‖ message id), which the
// enqueue wrote: the keys of the messages being delivered are adjacent (IDs
// start with the acceptance time), whatever their provider, and no other
// page is written for them. A provider walk reads the main file's part by
// walking the team's index there and taking the keys whose value names
// the provider: the main file holds the queue and the last minutes of
// finished mail, not the history.
// The day files, written by the mover in batches, keep the provider-first
// keys, which answer a provider walk over 30 days without a scan. Keys a
// file of an earlier version has in bMsgByFilter stay readable (the walk
// reads both) and go when their message is next written.

import (
	"bytes"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// In the main file a bMsgByTeam value is be64(CreatedAt unix nanos) ‖ each
// provider the message used (Message.UsedProvider), sorted, each followed
// by 0x00; in a day file (and for a message that used none) the creation
// time alone. Readers of the creation time take the first 8 bytes.

// isMainTx reports whether tx is the main file's (day files have no
// counter log).
func isMainTx(tx *bolt.Tx) bool { return tx.Bucket(bMsgCountLog) != nil }

// teamIndexValue is m's bMsgByTeam value in tx's file.
func teamIndexValue(tx *bolt.Tx, m *Message) []byte {
	if isMainTx(tx) {
		if v := providersValue(m); v != nil {
			return v
		}
	}
	return createdValue(m)
}

// providersValue is m's main-file bMsgByTeam value, nil when it used no
// provider.
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

// syncProviders makes m's team index value in the main file (b) say m's
// providers.
func syncProviders(b *bolt.Bucket, m *Message) error {
	k := teamIndexKey(m.TeamID, m.ID)
	v := providersValue(m)
	if v == nil {
		v = createdValue(m)
	}
	if bytes.Equal(b.Get(k), v) {
		return nil
	}
	return b.Put(k, v)
}

// listsProviders reports whether a bMsgByTeam value names providers (a
// main-file value of a message written since schema 9 that used any).
func listsProviders(v []byte) bool { return len(v) > 8 }

// namesProvider reports whether a bMsgByTeam value lists providerID.
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

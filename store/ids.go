package store

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"strings"
	"sync"
	"time"
)

// lowerBase32 is Crockford-ish lowercase base32 without padding; its
// alphabet is in ascending byte order so that encoded timestamps sort.
var lowerBase32 = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// Public ID prefixes.
const (
	PrefixTeam     = "team_"
	PrefixKey      = "key_"
	PrefixProvider = "dprov_"
	PrefixMessage  = "eml_"
	PrefixGroup    = "dgrp_"
	PrefixMailbox  = "mbx_"
	PrefixPassword = "mbxpw_"
	PrefixRequest  = "req_"
)

// NodeMessageID is a message ID that names the cluster node that
// accepted it (and so holds its spool entry and delivers it): NewID's form,
// then '-' and the node ID. The time-ordered 24 characters come first, so
// IDs still sort by creation and the log's time-range seeks still work;
// single-node IDs stay as they were.
func NodeMessageID(nodeID string) string {
	if nodeID == "" {
		return NewID(PrefixMessage)
	}
	return NewID(PrefixMessage) + "-" + nodeID
}

// MessageNode is the node ID a message ID names ("" for a single-node ID).
func MessageNode(id string) string {
	if len(id) > len(PrefixMessage)+25 && id[len(PrefixMessage)+24] == '-' {
		return id[len(PrefixMessage)+25:]
	}
	return ""
}

// validNodeSuffix is a node ID as [cluster] node_id allows it: 1–32 of
// a-z, 0-9 and '-', not starting with '-'.
func validNodeSuffix(s string) bool {
	if s == "" || len(s) > 32 || s[0] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-') {
			return false
		}
	}
	return true
}

// NewID returns prefix + 24 lowercase base32 characters encoding 120 bits:
// 48 bits of millisecond time, a 16-bit per-process sequence, 56 random
// bits. IDs of one kind made by one process therefore sort strictly by
// creation, in bbolt and in API lists, even within one millisecond.
func NewID(prefix string) string {
	var raw [15]byte
	ms, seq := nextTick()
	binary.BigEndian.PutUint64(raw[:8], ms<<16|uint64(seq))
	if _, err := rand.Read(raw[8:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // the OS RNG does not fail on Linux
	}
	return prefix + lowerBase32.EncodeToString(raw[:])
}

var (
	idMu     sync.Mutex
	idLastMS uint64
	idSeq    uint16
)

// nextTick returns a (millisecond, sequence) pair greater than the last
// one, even if the clock stood still or stepped back.
func nextTick() (uint64, uint16) {
	ms := uint64(time.Now().UnixMilli()) & (1<<48 - 1)
	idMu.Lock()
	defer idMu.Unlock()
	if ms <= idLastMS {
		ms = idLastMS
		idSeq++
		if idSeq == 0 {
			ms++
		}
	} else {
		idSeq = 0
	}
	idLastMS = ms
	return ms, idSeq
}

// ValidID reports whether id is prefix followed by 24 base32 characters; it
// guards lookups and file names against hostile input.
func ValidID(prefix, id string) bool {
	if prefix == PrefixMessage && len(id) > len(prefix)+24 && id[len(prefix)+24] == '-' {
		// A cluster node's message ID: the node's ID after a '-'.
		if !validNodeSuffix(id[len(prefix)+25:]) {
			return false
		}
		id = id[:len(prefix)+24]
	}
	if !strings.HasPrefix(id, prefix) || len(id) != len(prefix)+24 {
		return false
	}
	for _, c := range id[len(prefix):] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

package store

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"strings"
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

// NewID returns prefix + 24 lowercase base32 characters: 48 bits of
// millisecond time (so IDs of one kind sort by creation in bbolt) followed
// by 72 random bits.
func NewID(prefix string) string {
	var raw [15]byte
	ms := uint64(time.Now().UnixMilli())
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], ms<<16)
	copy(raw[:6], ts[:6])
	if _, err := rand.Read(raw[6:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // the OS RNG does not fail on Linux
	}
	return prefix + lowerBase32.EncodeToString(raw[:])
}

// ValidID reports whether id is prefix followed by 24 base32 characters; it
// guards lookups and file names against hostile input.
func ValidID(prefix, id string) bool {
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

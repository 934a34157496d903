package store

import (
	"strings"
	"testing"
)

// TestNodeMessageID: a cluster node's message IDs carry its node ID and
// still sort by creation; hostile suffixes are not IDs.
func TestNodeMessageID(t *testing.T) {
	a, b := NodeMessageID("node-1"), NodeMessageID("a")
	if !strings.HasSuffix(a, "-node-1") || !ValidID(PrefixMessage, a) || !ValidID(PrefixMessage, b) {
		t.Fatalf("%q %q", a, b)
	}
	if a[:28] >= b[:28] || MessageNode(a) != "node-1" || MessageNode(NewID(PrefixMessage)) != "" {
		t.Fatalf("order or node of %q %q", a, b)
	}
	if id := NodeMessageID(""); len(id) != 28 || !ValidID(PrefixMessage, id) {
		t.Fatalf("single-node ID %q", id)
	}
	base := NewID(PrefixMessage)
	for _, bad := range []string{base + "-", base + "--x", base + "-A", base + "-a/b", base + "-" + strings.Repeat("a", 33), base + "x", base + "-a\x00"} {
		if ValidID(PrefixMessage, bad) {
			t.Errorf("%q accepted", bad)
		}
	}
	if ValidID(PrefixProvider, NewID(PrefixProvider)+"-n1") {
		t.Error("a node suffix on another kind of ID")
	}
}

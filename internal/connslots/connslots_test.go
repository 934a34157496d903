package connslots

import "testing"

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":                  "192.0.2.1",
		"192.0.2.1:2525":             "192.0.2.1",
		"[2001:db8:1:2:aaaa::1]:587": "2001:db8:1:2::/64",
		"2001:db8:1:2:aaaa::1":       "2001:db8:1:2::/64",
		"2001:db8:1:2:bbbb::9":       "2001:db8:1:2::/64",
		"::ffff:192.0.2.1":           "::ffff:192.0.2.1",
		"not-an-ip":                  "not-an-ip",
		"2001:db8:1:3::1":            "2001:db8:1:3::/64",
		"fe80::1":                    "fe80::/64",
		"2001:db8:ffff:ffff::ab":     "2001:db8:ffff:ffff::/64",
		"@":                          "@",
	} {
		if got := ClientKey(in); got != want {
			t.Errorf("ClientKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSlots: the per-client cap is checked before the global one and
// refuses without taking a slot; releases free both.
func TestSlots(t *testing.T) {
	s := New(3, 2)
	steps := []struct {
		key  string
		want Result
	}{{"a", OK}, {"a", OK}, {"a", ClientFull}, {"b", OK}, {"c", Full}, {"a", ClientFull}}
	for i, st := range steps {
		if got := s.Take(st.key); got != st.want {
			t.Fatalf("step %d (%s): %v, want %v", i, st.key, got, st.want)
		}
	}
	s.Release("a")
	if got := s.Take("c"); got != OK {
		t.Fatalf("after a release: %v, want a slot", got)
	}
	if got := s.Take("a"); got != Full {
		t.Fatalf("a under its own cap with the server full: %v, want Full", got)
	}
	s.Release("b")
	s.Release("c")
	s.Release("a")
	if total, a := s.Open("a"); total != 0 || a != 0 || len(s.byClient) != 0 {
		t.Fatalf("after every release: %d open, %d from a, per client %v", total, a, s.byClient)
	}
}

// TestNoCaps: zero caps never refuse.
func TestNoCaps(t *testing.T) {
	s := New(0, 0)
	for i := 0; i < 1000; i++ {
		if s.Take("a") != OK {
			t.Fatalf("take %d refused with no caps", i)
		}
	}
}

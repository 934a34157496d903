package mailhdr

import (
	"bytes"
	"testing"

	"github.com/smtpmux/smtpmux/internal/mailhdr/hdrcases"
)

func TestSplit(t *testing.T) {
	for _, c := range []struct {
		name, msg string
		o         Options
		fields    []string // each field's bytes
		body      string
		blank     bool
		nl        string
	}{
		{"crlf", "A: 1\r\nB: 2\r\n\r\nbody", Options{}, []string{"A: 1\r\n", "B: 2\r\n"}, "body", true, "\r\n"},
		{"folded", "A: 1\r\n x\r\n\ty\r\nB: 2\r\n\r\n", Options{}, []string{"A: 1\r\n x\r\n\ty\r\n", "B: 2\r\n"}, "", true, "\r\n"},
		{"bare lf", "A: 1\nB: 2\n\nbody", Options{}, []string{"A: 1\n", "B: 2\n"}, "body", true, "\n"},
		{"bare lf, CRLF mode", "A: 1\nB: 2\r\n\r\nbody", Options{Mode: CRLF}, []string{"A: 1\nB: 2\r\n"}, "body", true, "\r\n"},
		{"no separator", "A: 1\r\nB: 2", Options{}, []string{"A: 1\r\n", "B: 2"}, "", false, "\r\n"},
		{"leading continuation", " x: 1\r\nA: 2\r\n\r\n", Options{}, []string{" x: 1\r\n", "A: 2\r\n"}, "", true, "\r\n"},
		{"CR-only line is a field", "A: 1\r\n\r\r\nB: 2\r\n\r\n", Options{}, []string{"A: 1\r\n", "\r\r\n", "B: 2\r\n"}, "", true, "\r\n"},
		{"CR-only line is blank", "A: 1\r\n\r\r\nB: 2\r\n\r\n", Options{CROnlyBlank: true}, []string{"A: 1\r\n"}, "B: 2\r\n\r\n", true, "\r\n"},
		{"trailing CR is blank", "A: 1\r\n\r", Options{CROnlyBlank: true}, []string{"A: 1\r\n"}, "", true, "\r\n"},
		{"empty header", "\r\nbody", Options{}, nil, "body", true, "\r\n"},
		{"empty input", "", Options{}, nil, "", false, "\r\n"},
	} {
		b := []byte(c.msg)
		h := Split(b, c.o)
		var got []string
		for _, f := range h.Fields {
			got = append(got, string(b[f.Start:f.End]))
		}
		if len(got) != len(c.fields) || h.Blank != c.blank || string(b[h.Body:]) != c.body || h.NL != c.nl {
			t.Errorf("%s: fields %q blank %v body %q nl %q; want %q %v %q %q", c.name, got, h.Blank, b[h.Body:], h.NL, c.fields, c.blank, c.body, c.nl)
			continue
		}
		for i := range got {
			if got[i] != c.fields[i] {
				t.Errorf("%s: field %d = %q, want %q", c.name, i, got[i], c.fields[i])
			}
		}
	}
}

func TestFieldNameAndLines(t *testing.T) {
	b := []byte("Subject : a\r\n b\r\nnocolon\r\n\r\n")
	h := Split(b, Options{})
	if len(h.Fields) != 2 {
		t.Fatalf("%d fields", len(h.Fields))
	}
	if n := string(h.Fields[0].Name(b)); n != "Subject " {
		t.Errorf("name %q", n)
	}
	if n := string(h.Fields[1].Name(b)); n != "nocolon" || h.Fields[1].Colon != -1 {
		t.Errorf("name of a line without colon: %q, colon %d", n, h.Fields[1].Colon)
	}
	if ls := h.Fields[0].Lines(b, LF); len(ls) != 2 || string(ls[0]) != "Subject : a" || string(ls[1]) != " b" {
		t.Errorf("lines %q", ls)
	}
}

// FuzzSplit checks what every caller relies on, for any input and mode:
// the fields tile the header from its first byte to End, each line
// belongs to exactly one field, and the body follows the blank line.
func FuzzSplit(f *testing.F) {
	for _, c := range hdrcases.Edge {
		f.Add([]byte(c.Msg), uint8(0))
	}
	f.Fuzz(func(t *testing.T, b []byte, opt uint8) {
		o := Options{Mode: Mode(opt & 1), CROnlyBlank: opt&2 != 0}
		h := Split(b, o)
		pos := 0
		for i, fl := range h.Fields {
			if fl.Start != pos || fl.End <= fl.Start || fl.First > fl.End-fl.Start {
				t.Fatalf("field %d %+v after %d", i, fl, pos)
			}
			if fl.Colon >= 0 && (fl.Colon >= fl.First || b[fl.Start+fl.Colon] != ':' || bytes.IndexByte(b[fl.Start:fl.Start+fl.Colon], ':') >= 0) {
				t.Fatalf("field %d colon %d", i, fl.Colon)
			}
			n := 0
			for _, l := range fl.Lines(b, o.Mode) {
				n += len(l)
			}
			if n > fl.End-fl.Start || n == 0 {
				t.Fatalf("field %d lines hold %d of %d bytes", i, n, fl.End-fl.Start)
			}
			pos = fl.End
		}
		if h.End != pos {
			t.Fatalf("end %d, fields end at %d", h.End, pos)
		}
		if h.Blank && (h.Body <= h.End || h.Body > len(b)) || !h.Blank && (h.End != len(b) || h.Body != len(b)) {
			t.Fatalf("blank %v end %d body %d len %d", h.Blank, h.End, h.Body, len(b))
		}
	})
}

// TestSplitAllocatesOnce: a header of up to 16 fields costs one
// allocation (the field list), not one per doubling of it.
func TestSplitAllocatesOnce(t *testing.T) {
	b := []byte("A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: 8\r\nI: 9\r\nJ: 10\r\n\r\nbody")
	var n int
	allocs := testing.AllocsPerRun(100, func() { n = len(Split(b, Options{}).Fields) })
	if n != 10 || allocs > 1 {
		t.Fatalf("%d fields, %v allocations; want 10 fields, 1 allocation", n, allocs)
	}
}

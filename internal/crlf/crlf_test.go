package crlf

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"runtime"
	"testing"
	"testing/iotest"
)

// chunked returns b in reads of the given sizes (the last repeated), as
// BDAT chunks or TCP segments would split it.
type chunked struct {
	b     []byte
	sizes []int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := c.sizes[0]
	if len(c.sizes) > 1 {
		c.sizes = c.sizes[1:]
	}
	n = min(n, len(p), len(c.b))
	copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

func readAll(in []byte, mode Mode, sizes ...int) ([]byte, error) {
	if len(sizes) == 0 {
		sizes = []int{len(in) + 1}
	}
	return io.ReadAll(NewReader(&chunked{b: in, sizes: sizes}, mode))
}

func TestLineEnds(t *testing.T) {
	for _, c := range []struct{ in, norm string }{
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\rb\r\n", "a\r\nb\r\n"},
		{"a\nb\r\n", "a\r\nb\r\n"},
		{"a\r.\rMAIL FROM:<x@y>\r\n", "a\r\n.\r\nMAIL FROM:<x@y>\r\n"},
		{"a\n.\nb\r\n", "a\r\n.\r\nb\r\n"},
		{"a\n.\r\nb\r\n", "a\r\n.\r\nb\r\n"},
		{"a\r.\r\nb\r\n", "a\r\n.\r\nb\r\n"},
		{"a\r\n.\rb\r\n", "a\r\n.\r\nb\r\n"},
		{"a\r\n.\nb\r\n", "a\r\n.\r\nb\r\n"},
		{"a\r\r\n.\r\nb\r\n", "a\r\n\r\n.\r\nb\r\n"},
		{"a\n\r\nb\r\n", "a\r\n\r\nb\r\n"},
		{"a\n\rb", "a\r\n\r\nb"},
		{"a\r\r\r\n", "a\r\n\r\n\r\n"},
		{"a\r", "a\r\n"},
		{"\n", "\r\n"},
		{"\r", "\r\n"},
		{"Subject: x\r\n y\r z\r\n\r\nb\r\n", "Subject: x\r\n y\r\n z\r\n\r\nb\r\n"},
		{"", ""},
	} {
		clean := c.in == c.norm
		if got := Clean([]byte(c.in)); got != clean {
			t.Errorf("Clean(%q) = %v", c.in, got)
		}
		if got := Normalize([]byte(c.in)); string(got) != c.norm {
			t.Errorf("Normalize(%q) = %q, want %q", c.in, got, c.norm)
		}
		for _, sizes := range [][]int{nil, {1}, {2}, {3, 1}} {
			got, err := readAll([]byte(c.in), ModeNormalize, sizes...)
			if err != nil || string(got) != c.norm {
				t.Errorf("normalize %q in reads %v: %q %v, want %q", c.in, sizes, got, err, c.norm)
			}
			got, err = readAll([]byte(c.in), ModeReject, sizes...)
			if clean && (err != nil || string(got) != c.in) {
				t.Errorf("reject %q in reads %v: %q %v, want it unchanged", c.in, sizes, got, err)
			}
			if !clean && !errors.Is(err, ErrBareNewline) {
				t.Errorf("reject %q in reads %v: %q %v, want ErrBareNewline", c.in, sizes, got, err)
			}
		}
	}
}

func TestNUL(t *testing.T) {
	for _, mode := range []Mode{ModeReject, ModeNormalize} {
		if _, err := readAll([]byte("a\r\nb\x00c\r\n"), mode, 3); !errors.Is(err, ErrNUL) {
			t.Errorf("mode %d: %v, want ErrNUL", mode, err)
		}
	}
}

// TestRandomChunks checks, over random content and random read sizes, that
// the Reader agrees with Normalize and Clean on the whole input.
func TestRandomChunks(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	alphabet := []byte("a.\r\n")
	for i := 0; i < 3000; i++ {
		in := make([]byte, rng.Intn(40))
		for j := range in {
			in[j] = alphabet[rng.Intn(len(alphabet))]
		}
		sizes := []int{1 + rng.Intn(5), 1 + rng.Intn(5), 1 + rng.Intn(9)}
		got, err := readAll(in, ModeNormalize, sizes...)
		if want := Normalize(in); err != nil || !bytes.Equal(got, want) || !Clean(got) {
			t.Fatalf("normalize %q in %v: %q %v, want %q", in, sizes, got, err, want)
		}
		got, err = readAll(in, ModeReject, sizes...)
		if Clean(in) != (err == nil) || err == nil && !bytes.Equal(got, in) {
			t.Fatalf("reject %q in %v: %q %v (clean %v)", in, sizes, got, err, Clean(in))
		}
	}
}

func TestReaderContract(t *testing.T) {
	in := bytes.Repeat([]byte("line\r\nbare\rlf\n"), 5000)
	if err := iotest.TestReader(NewReader(bytes.NewReader(in), ModeNormalize), Normalize(in)); err != nil {
		t.Fatal(err)
	}
}

func FuzzNormalize(f *testing.F) {
	f.Add([]byte("a\r.\rMAIL FROM:<x@y>\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if bytes.IndexByte(in, 0) >= 0 {
			return
		}
		out := Normalize(in)
		if !Clean(out) {
			t.Fatalf("Normalize(%q) = %q is not clean", in, out)
		}
		got, err := readAll(in, ModeNormalize, 7, 1, 3)
		if err != nil || !bytes.Equal(got, out) {
			t.Fatalf("Reader %q %v, Normalize %q", got, err, out)
		}
	})
}

// TestRejectReaderAllocatesNoBuffer: in the default mode a Reader filters
// in the caller's buffer. Each SMTP message gets a Reader, and one that
// allocated a 32 KiB buffer of its own made a third of everything the
// daemon allocated at 2 KiB per message (issue 19).
func TestRejectReaderAllocatesNoBuffer(t *testing.T) {
	msg := bytes.Repeat([]byte("Subject: x\r\n\r\nsome body line\r\n"), 64)
	buf := make([]byte, 64<<10)
	read := func() {
		r := NewReader(bytes.NewReader(msg), ModeReject)
		n := 0
		for {
			m, err := r.Read(buf[n:])
			n += m
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(buf[:n], msg) {
			t.Fatalf("read %d bytes, want the %d of msg", n, len(msg))
		}
	}
	read()
	const runs = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < runs; i++ {
		read()
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 1<<10 {
		t.Errorf("a message read through a Reader allocated %d bytes, want under 1 KiB", per)
	}
}

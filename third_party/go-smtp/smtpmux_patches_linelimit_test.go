package smtp

import (
	"bytes"
	"io"
	"math/rand"
	"testing"
)

// refLineLimit is lineLimitReader's count before patch 17: every '\n'
// found with IndexByte. The patched reader must end every read in the
// same state with the same answer.
type refLineLimit struct {
	limit, cur int
}

func (r *refLineLimit) count(data []byte) error {
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			r.cur += len(data)
			if r.cur > r.limit {
				return ErrTooLongLine
			}
			return nil
		}
		if r.cur+i > r.limit {
			r.cur += i
			return ErrTooLongLine
		}
		r.cur = 1
		data = data[i+1:]
	}
}

// chunkReader returns data in reads of the sizes it is given, in turn.
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
	last  []byte // what the last read returned
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := c.sizes[c.i%len(c.sizes)]
	if n > len(p) {
		n = len(p)
	}
	if n > len(c.data) {
		n = len(c.data)
	}
	c.i++
	copy(p, c.data[:n])
	c.last = c.data[:n]
	c.data = c.data[n:]
	return n, nil
}

// TestLineLimitFastPathMatches: random lines (empty to well over the
// limit), random read sizes and limits; each read's answer and the count
// after it match the loop's.
func TestLineLimitFastPathMatches(t *testing.T) {
	rng := rand.New(rand.NewSource(17))
	for iter := 0; iter < 3000; iter++ {
		limit := 1 + rng.Intn(200)
		var in []byte
		for len(in) < 2000 {
			n := rng.Intn(limit + limit/2 + 2)
			if rng.Intn(4) == 0 {
				n = rng.Intn(limit/4 + 1)
			}
			in = append(in, bytes.Repeat([]byte{'x'}, n)...)
			in = append(in, '\n')
		}
		sizes := []int{1 + rng.Intn(300), 1 + rng.Intn(40), 1 + rng.Intn(limit+1)}
		src := &chunkReader{data: in, sizes: sizes}
		lr := &lineLimitReader{R: src, LineLimit: limit}
		ref := &refLineLimit{limit: limit}
		buf := make([]byte, 512)
		for {
			n, err := lr.Read(buf)
			if err == io.EOF {
				break
			}
			want := ref.count(src.last) // on an error the reader returns no bytes
			if want != nil {
				if n != 0 || err != ErrTooLongLine {
					t.Fatalf("iter %d (limit %d): read got %d, %v, want 0, ErrTooLongLine", iter, limit, n, err)
				}
				if _, err := lr.Read(buf); err != ErrTooLongLine {
					t.Fatalf("iter %d: the read after ErrTooLongLine got %v, want it again", iter, err)
				}
				break
			}
			if err != nil {
				t.Fatalf("iter %d (limit %d): read of %d got %v, want none", iter, limit, n, err)
			}
			if lr.curLineLength != ref.cur {
				t.Fatalf("iter %d (limit %d): count %d after a read of %d, want %d", iter, limit, lr.curLineLength, n, ref.cur)
			}
		}
	}
}

// BenchmarkLineLimitReader reads a 100 KiB body of 76-character lines in
// 4 KiB reads (the command reader's), limit 64 KiB (smtpmux's).
func BenchmarkLineLimitReader(b *testing.B) {
	body := benchBody()
	buf := make([]byte, 4096)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		lr := &lineLimitReader{R: bytes.NewReader(body), LineLimit: 64 << 10}
		for {
			if _, err := lr.Read(buf); err != nil {
				break
			}
		}
	}
}

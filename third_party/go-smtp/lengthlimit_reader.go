package smtp

import (
	"bytes"
	"errors"
	"io"
)

var ErrTooLongLine = errors.New("smtp: too long a line in input stream")

// lineLimitReader reads from the underlying Reader but restricts
// line length of lines in input stream to a certain length.
//
// If line length exceeds the limit - Read returns ErrTooLongLine
type lineLimitReader struct {
	R         io.Reader
	LineLimit int

	curLineLength int
}

func (r *lineLimitReader) Read(b []byte) (int, error) {
	if r.curLineLength > r.LineLimit && r.LineLimit > 0 {
		return 0, ErrTooLongLine
	}

	n, err := r.R.Read(b)
	if err != nil {
		return n, err
	}

	if r.LineLimit == 0 {
		return n, nil
	}

	// smtpmux patch (17): when the line so far and all of this read fit in
	// the limit, no line in it can be over, and only the bytes after its
	// last '\n' carry on: one backward scan of a few bytes instead of an
	// IndexByte per line (a 100 KiB body of 78-byte lines made ~1,300
	// calls, part of the 10 % of the relay's CPU IndexByte took; the
	// limit is 64 KiB in smtpmux, a read at most the 4 KiB reader's). The
	// state after it is the loop's below, exactly.
	if r.curLineLength+n <= r.LineLimit {
		if j := bytes.LastIndexByte(b[:n], '\n'); j >= 0 {
			r.curLineLength = n - j
		} else {
			r.curLineLength += n
		}
		return n, nil
	}

	// smtpmux patch: the same count as a byte loop (curLineLength counts
	// the bytes since the last '\n', that '\n' included), found with
	// IndexByte.
	for data := b[:n]; ; {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			r.curLineLength += len(data)
			if r.curLineLength > r.LineLimit {
				return 0, ErrTooLongLine
			}
			break
		}
		if r.curLineLength+i > r.LineLimit {
			r.curLineLength += i // stays over the limit: the error is sticky
			return 0, ErrTooLongLine
		}
		r.curLineLength = 1
		data = data[i+1:]
	}

	return n, nil
}

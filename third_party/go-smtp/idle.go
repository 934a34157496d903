package smtp

// smtpmux patch (14): an idle connection holds no command buffer.
//
// A relay's clients keep sessions open between messages, and a server
// holds many of them (issue 19 of smtpmux: 1,000 idle sessions in 20 MB).
// textproto.NewConn gave every connection a 4 KiB bufio.Reader and a 4 KiB
// bufio.Writer for its whole life. The writer is now 512 bytes (conn.go
// init). The reader's buffer comes from a pool: when the next command is
// due and nothing is buffered, the connection gives its buffer back and
// blocks on a small read into idleReader's own bytes; once input arrives
// it takes a buffer again, which returns those bytes first. Pipelined input
// (already buffered) is read on without the round trip.

import (
	"bufio"
	"io"
	"sync"
	"time"
)

const (
	// commandBufferSize is textproto's default, kept: DATA and BDAT
	// bodies are read through the same reader.
	commandBufferSize = 4096
	// replyBufferSize holds one reply line (RFC 5321: at most 512
	// octets), which is all the writer ever holds before its flush.
	replyBufferSize = 512
)

var commandReaders = sync.Pool{New: func() interface{} { return bufio.NewReaderSize(nil, commandBufferSize) }}

// getCommandReader returns a pooled command reader reading from r.
func getCommandReader(r io.Reader) *bufio.Reader {
	br := commandReaders.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

// putCommandReader returns br to the pool; its buffered bytes are dropped.
func putCommandReader(br *bufio.Reader) {
	br.Reset(nil)
	commandReaders.Put(br)
}

// idleReader is what a connection's command reader reads from: first the
// bytes the idle wait read, then src (the connection, through the line
// limit).
type idleReader struct {
	src      io.Reader
	buf      [128]byte // a whole short command, in one read as before
	off, end int
}

func (r *idleReader) Read(p []byte) (int, error) {
	if r.off < r.end {
		n := copy(p, r.buf[r.off:r.end])
		r.off += n
		return n, nil
	}
	return r.src.Read(p)
}

// waitCommand blocks until the client sends something, holding no command
// buffer meanwhile. Its error is the read's (a timeout, EOF), which the
// caller treats as it treats readCommandLine's. deadline is the read
// deadline the caller set (zero: none), which idleRead may change and puts
// back.
func (c *Conn) waitCommand(deadline time.Time) error {
	if c.text.R.Buffered() > 0 || c.idle.off < c.idle.end {
		return nil // pipelined input: read on
	}
	putCommandReader(c.text.R)
	n, err := c.idleRead(deadline)
	c.idle.off, c.idle.end = 0, n
	// Always back to a usable reader, so nothing after an error finds nil.
	c.text.R = getCommandReader(&c.idle)
	if n > 0 {
		return nil // a read error after data comes again on the next read
	}
	if err == nil {
		return nil // a zero read: the line reader reads again
	}
	return err
}

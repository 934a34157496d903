package testpeer

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
)

// LaxServer is a raw-TCP SMTP upstream that, like some real servers, takes
// a bare CR and a bare LF for line ends, in commands and in DATA alike. It
// is the victim of SMTP smuggling: given "a\r.\rMAIL FROM:<x>\r\n…" inside
// one message, it ends the message at "\r.\r" and runs what follows as a
// second transaction. Tests check that every message smtpmux relays is
// exactly one transaction here. It accepts any AUTH and every command.
type LaxServer struct {
	ln  net.Listener
	mu  sync.Mutex
	txs []LaxTx
	wg  sync.WaitGroup
}

// LaxTx is one transaction the lax server saw: its MAIL FROM path and
// the message lines (without line ends, dots unstuffed).
type LaxTx struct {
	From  string
	Lines []string
}

// StartLax starts a lax server on 127.0.0.1:0, closed by t.Cleanup.
func StartLax(t testing.TB) *LaxServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &LaxServer{ln: ln}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

// Host is the listening IP.
func (s *LaxServer) Host() string { return s.ln.Addr().(*net.TCPAddr).IP.String() }

// Port is the listening port.
func (s *LaxServer) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Transactions returns the transactions completed so far.
func (s *LaxServer) Transactions() []LaxTx {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]LaxTx(nil), s.txs...)
}

func (s *LaxServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.conn(c)
		}()
	}
}

// readLaxLine reads up to a CRLF, a bare CR or a bare LF.
func readLaxLine(r *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		c, err := r.ReadByte()
		if err != nil {
			return b.String(), err
		}
		switch c {
		case '\n':
			return b.String(), nil
		case '\r':
			if next, err := r.Peek(1); err == nil && next[0] == '\n' {
				r.ReadByte()
			}
			return b.String(), nil
		}
		b.WriteByte(c)
	}
}

func (s *LaxServer) conn(c net.Conn) {
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	reply := func(line string) bool {
		w.WriteString(line + "\r\n")
		return w.Flush() == nil
	}
	if !reply("220 lax.test ESMTP") {
		return
	}
	var tx *LaxTx
	for {
		line, err := readLaxLine(r)
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch {
		case verb == "EHLO":
			w.WriteString("250-lax.test\r\n250-8BITMIME\r\n")
			if !reply("250 AUTH PLAIN LOGIN") {
				return
			}
		case verb == "AUTH":
			if !reply("235 2.7.0 ok") {
				return
			}
		case strings.HasPrefix(strings.ToUpper(line), "MAIL FROM:"):
			path, _, _ := strings.Cut(strings.TrimSpace(line[len("MAIL FROM:"):]), " ")
			tx = &LaxTx{From: path}
			if !reply("250 ok") {
				return
			}
		case verb == "DATA":
			if !reply("354 go") {
				return
			}
			for {
				l, err := readLaxLine(r)
				if err != nil {
					return
				}
				if l == "." {
					break
				}
				if tx != nil {
					tx.Lines = append(tx.Lines, strings.TrimPrefix(l, "."))
				}
			}
			if tx != nil {
				s.mu.Lock()
				s.txs = append(s.txs, *tx)
				s.mu.Unlock()
				tx = nil
			}
			if !reply("250 ok queued") {
				return
			}
		case verb == "QUIT":
			reply("221 bye")
			return
		default: // RCPT, RSET, NOOP, and whatever a smuggled line holds
			if !reply("250 ok") {
				return
			}
		}
	}
}

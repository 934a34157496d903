// Command smtpsink is the counting upstream of the smtpmux benchmark: an SMTP
// server (go-smtp) that accepts every message, verifies its X-Bench-Sum
// trailer, counts duplicates by Message-ID and records the times of the
// first and last message.
//
// Its counters are served as JSON on -status-addr:
//
//	GET  /status                   counters now
//	GET  /wait?n=N&timeout=60s     block until N distinct messages arrived (or timeout)
//	POST /reset                    zero the counters (between runs)
//	GET  /debug/pprof/…            Go profiles of the sink itself
package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/bench/internal/benchmsg"
	"github.com/smtpmux/smtpmux/internal/selfsigned"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:2525", "SMTP listen address")
	statusAddr := flag.String("status-addr", "127.0.0.1:2580", "HTTP status listen address")
	maxBytes := flag.Int64("max-size", 64<<20, "largest message accepted, in bytes")
	startTLS := flag.Bool("starttls", false, "offer STARTTLS with a self-signed certificate")
	dump := flag.String("dump", "", "also write every message to DIR/<n>.eml, byte for byte (for walkthroughs, not benchmarks)")
	flag.Parse()

	c := newCounter()
	if *dump != "" {
		if err := os.MkdirAll(*dump, 0o755); err != nil {
			log.Fatal(err)
		}
	}
	s := smtp.NewServer(&backend{c: c, dump: *dump})
	s.Addr = *addr
	s.Domain = "smtpsink.localdomain"
	s.MaxMessageBytes = *maxBytes
	s.MaxRecipients = 1000
	s.AllowInsecureAuth = true
	s.ReadTimeout = 2 * time.Minute
	s.WriteTimeout = 2 * time.Minute
	if *startTLS {
		cert, _, _, err := selfsigned.New("localhost", 24*time.Hour)
		if err != nil {
			log.Fatal(err)
		}
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	hl, err := net.Listen("tcp", *statusAddr)
	if err != nil {
		log.Fatal(err)
	}
	go func() { log.Fatal(http.Serve(hl, c.handler())) }()
	go func() {
		if err := s.Serve(ln); err != nil {
			log.Fatal(err)
		}
	}()
	log.Printf("smtpsink: smtp on %s, status on http://%s/status", ln.Addr(), hl.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	s.Close()
}

// backend hands every connection a session that feeds the shared counter.
type backend struct {
	c    *counter
	dump string
}

// NewSession implements smtp.Backend.
func (b *backend) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &session{c: b.c, dump: b.dump}, nil
}

// session accepts any envelope and any AUTH PLAIN credentials.
type session struct {
	c    *counter
	dump string
	buf  bytes.Buffer
}

func (s *session) Reset()                                {}
func (s *session) Logout() error                         { return nil }
func (s *session) Mail(string, *smtp.MailOptions) error  { s.c.started(); return nil }
func (s *session) Rcpt(string, *smtp.RcptOptions) error  { return nil }
func (s *session) AuthMechanisms() []string              { return []string{sasl.Plain} }
func (s *session) Auth(string) (sasl.Server, error)      { return sasl.NewPlainServer(anyLogin), nil }
func anyLogin(identity, username, password string) error { return nil }

// Data reads the whole message into the session's buffer and verifies it.
func (s *session) Data(r io.Reader) error {
	s.buf.Reset()
	if _, err := s.buf.ReadFrom(r); err != nil {
		return err
	}
	id, err := benchmsg.Verify(s.buf.Bytes())
	n := s.c.record(id, int64(s.buf.Len()), err)
	if s.dump != "" {
		name := filepath.Join(s.dump, fmt.Sprintf("%06d.eml", n))
		if err := os.WriteFile(name, s.buf.Bytes(), 0o644); err != nil {
			log.Printf("dump: %v", err)
		} else {
			log.Printf("received %d bytes → %s", s.buf.Len(), name)
		}
	}
	if s.buf.Cap() > 1<<20 { // do not keep a huge buffer per idle session
		s.buf = bytes.Buffer{}
	}
	return nil
}

// counter holds the sink's figures; every field is guarded by mu.
type counter struct {
	mu      sync.Mutex
	changed *sync.Cond
	seen    map[string]struct{}
	st      Status
	cpu0    time.Duration // process CPU time at the last reset
}

// Status is the JSON document served by the status endpoint.
type Status struct {
	Received    int64   `json:"received"`     // messages accepted (all, duplicates included)
	Unique      int64   `json:"unique"`       // distinct Message-IDs with a good checksum
	BadChecksum int64   `json:"bad_checksum"` // trailer missing or not matching
	Duplicates  int64   `json:"duplicates"`   // Message-ID seen before
	Bytes       int64   `json:"bytes"`        // message bytes received
	First       string  `json:"first"`        // first MAIL FROM, RFC 3339
	Last        string  `json:"last"`         // end of the last message's DATA, RFC 3339
	FirstNS     int64   `json:"first_unix_ns"`
	LastNS      int64   `json:"last_unix_ns"`
	CPUs        float64 `json:"cpu_s"`               // sink CPU time since start or reset
	TimedOut    bool    `json:"timed_out,omitempty"` // set by /wait
}

func newCounter() *counter {
	c := &counter{seen: make(map[string]struct{}), cpu0: cpuTime()}
	c.changed = sync.NewCond(&c.mu)
	return c
}

// started notes the first transaction's start time.
func (c *counter) started() {
	c.mu.Lock()
	if c.st.FirstNS == 0 {
		c.st.FirstNS = time.Now().UnixNano()
	}
	c.mu.Unlock()
}

// record counts one received message.
// record counts one message and returns its sequence number.
func (c *counter) record(id []byte, n int64, verr error) int64 {
	now := time.Now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.Received++
	c.st.Bytes += n
	c.st.LastNS = now
	if verr != nil {
		c.st.BadChecksum++
	}
	if id != nil {
		if _, dup := c.seen[string(id)]; dup {
			c.st.Duplicates++
		} else {
			c.seen[string(id)] = struct{}{}
			if verr == nil {
				c.st.Unique++
			}
		}
	}
	c.changed.Broadcast()
	return c.st.Received
}

// snapshot returns the counters with the time fields formatted.
func (c *counter) snapshot() Status {
	st := c.st
	st.CPUs = (cpuTime() - c.cpu0).Seconds()
	if st.FirstNS != 0 {
		st.First = time.Unix(0, st.FirstNS).UTC().Format(time.RFC3339Nano)
	}
	if st.LastNS != 0 {
		st.Last = time.Unix(0, st.LastNS).UTC().Format(time.RFC3339Nano)
	}
	return st
}

// handler serves /status, /wait and /reset.
func (c *counter) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	reply := func(w http.ResponseWriter, st Status) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
	}
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		st := c.snapshot()
		c.mu.Unlock()
		reply(w, st)
	})
	mux.HandleFunc("GET /wait", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		timeout, err := time.ParseDuration(r.URL.Query().Get("timeout"))
		if err != nil {
			timeout = time.Minute
		}
		// Wake the waiter at the deadline even if no message arrives.
		deadline := time.AfterFunc(timeout, func() {
			c.mu.Lock()
			c.changed.Broadcast()
			c.mu.Unlock()
		})
		defer deadline.Stop()
		end := time.Now().Add(timeout)
		c.mu.Lock()
		for c.st.Unique+c.st.BadChecksum < n && time.Now().Before(end) {
			c.changed.Wait()
		}
		st := c.snapshot()
		c.mu.Unlock()
		st.TimedOut = st.Unique+st.BadChecksum < n
		reply(w, st)
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.st = Status{}
		c.seen = make(map[string]struct{})
		c.cpu0 = cpuTime()
		st := c.snapshot()
		c.mu.Unlock()
		reply(w, st)
	})
	return mux
}

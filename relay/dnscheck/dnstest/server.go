// Package dnstest runs a small authoritative DNS server on 127.0.0.1 for
// tests, so domain verification and DKIM verification can be exercised
// against real DNS traffic (UDP with truncation, TCP) instead of a mock.
// Point dnscheck's resolver address (config [dns] resolver) at Server.Addr.
package dnstest

import (
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"
)

// Server answers TXT queries from an in-memory table. Unknown names get
// NXDOMAIN; known names asked for another type get an empty NOERROR.
type Server struct {
	// Addr is "127.0.0.1:port", the same port for UDP and TCP.
	Addr string

	mu     sync.Mutex
	txt    map[string][][]string // fqdn -> records -> character-strings
	rcode  map[string]int        // fqdn -> forced response code
	tcp    bool                  // answer UDP with TC=1 and nothing else
	udpN   atomic.Int64
	tcpN   atomic.Int64
	udpSrv *dns.Server
	tcpSrv *dns.Server
}

// Start listens on a free 127.0.0.1 port (UDP and TCP) and serves until
// Close.
func Start() (*Server, error) {
	s := &Server{txt: map[string][][]string{}, rcode: map[string]int{}}
	var lastErr error
	for try := 0; try < 10; try++ {
		// Bind UDP first on a free port, then TCP on the same number; the
		// TCP port may be taken by someone else, in which case try again.
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			lastErr = err
			continue
		}
		s.Addr = pc.LocalAddr().String()
		s.udpSrv = &dns.Server{PacketConn: pc, Handler: s}
		s.tcpSrv = &dns.Server{Listener: l, Handler: s}
		started := make(chan struct{}, 2)
		s.udpSrv.NotifyStartedFunc = func() { started <- struct{}{} }
		s.tcpSrv.NotifyStartedFunc = func() { started <- struct{}{} }
		go s.udpSrv.ActivateAndServe()
		go s.tcpSrv.ActivateAndServe()
		<-started
		<-started
		return s, nil
	}
	return nil, errors.Join(errors.New("dnstest: no port free for both UDP and TCP"), lastErr)
}

// Close stops both listeners.
func (s *Server) Close() {
	s.udpSrv.Shutdown()
	s.tcpSrv.Shutdown()
}

// SetTXT replaces the TXT records at name, one record per value. Values
// longer than 255 bytes are split into several character-strings, as a
// real zone would hold them.
func (s *Server) SetTXT(name string, values ...string) {
	recs := make([][]string, len(values))
	for i, v := range values {
		for len(v) > 255 {
			recs[i] = append(recs[i], v[:255])
			v = v[255:]
		}
		recs[i] = append(recs[i], v)
	}
	s.SetTXTStrings(name, recs...)
}

// SetTXTStrings replaces the TXT records at name with records made of
// exactly the given character-strings, for tests of odd splits.
func (s *Server) SetTXTStrings(name string, records ...[]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.txt[key(name)] = records
}

// Remove deletes name, which then answers NXDOMAIN.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.txt, key(name))
	delete(s.rcode, key(name))
}

// SetRcode makes every query for name fail with rcode (e.g.
// dns.RcodeServerFailure); dns.RcodeSuccess restores normal answers.
func (s *Server) SetRcode(name string, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rcode == dns.RcodeSuccess {
		delete(s.rcode, key(name))
	} else {
		s.rcode[key(name)] = rcode
	}
}

// ForceTCP makes every UDP answer a bare truncated reply, so clients must
// retry over TCP to get anything.
func (s *Server) ForceTCP(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tcp = on
}

// Queries reports how many queries arrived over UDP and over TCP.
func (s *Server) Queries() (udp, tcp int64) { return s.udpN.Load(), s.tcpN.Load() }

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	overUDP := w.LocalAddr().Network() == "udp"
	if overUDP {
		s.udpN.Add(1)
	} else {
		s.tcpN.Add(1)
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	s.mu.Lock()
	recs, known := s.txt[key(q.Name)]
	rcode, forced := s.rcode[key(q.Name)]
	forceTCP := s.tcp
	s.mu.Unlock()
	switch {
	case forced:
		m.Rcode = rcode
	case !known:
		m.Rcode = dns.RcodeNameError
	case q.Qtype == dns.TypeTXT:
		for _, r := range recs {
			m.Answer = append(m.Answer, &dns.TXT{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300},
				Txt: r,
			})
		}
	}
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), false)
		size = int(opt.UDPSize())
	}
	if overUDP {
		if forceTCP {
			m.Answer, m.Truncated = nil, true
		} else {
			m.Truncate(size) // sets TC when the answer does not fit
		}
	}
	if err := w.WriteMsg(m); err != nil {
		// Typically a character-string over 255 bytes from SetTXTStrings:
		// answer SERVFAIL so the test sees an error, not a timeout.
		fail := new(dns.Msg)
		fail.SetRcode(req, dns.RcodeServerFailure)
		w.WriteMsg(fail)
	}
}

func key(name string) string { return strings.ToLower(dns.Fqdn(name)) }

// BlackHole is a UDP "resolver" that reads queries and never answers, for
// testing timeouts.
type BlackHole struct {
	Addr string
	pc   net.PacketConn
}

// StartBlackHole listens on a free 127.0.0.1 UDP port.
func StartBlackHole() (*BlackHole, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &BlackHole{Addr: pc.LocalAddr().String(), pc: pc}
	go func() {
		buf := make([]byte, 65535)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return b, nil
}

// Close stops the black hole.
func (b *BlackHole) Close() { b.pc.Close() }

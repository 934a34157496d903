package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Check statuses.
const (
	StatusPass = "pass"
	StatusFail = "fail"
)

// Result is the outcome of one verification run.
type Result struct {
	Domain   string `json:"domain"`
	Verified bool   `json:"verified"` // verification_txt and dkim both pass
	// Temporary: not verified, and at least one required check failed only
	// because DNS did not answer (timeout, SERVFAIL). The caller should keep
	// the domain pending and retry rather than mark it failed.
	Temporary bool    `json:"temporary"`
	Checks    []Check `json:"checks"`
}

// Check reports one record: what was asked, what was expected and found.
type Check struct {
	Name      string   `json:"name"`   // one of the Check* names
	Record    string   `json:"record"` // the DNS name queried
	Status    string   `json:"status"` // StatusPass or StatusFail
	Required  bool     `json:"required"`
	Expected  string   `json:"expected,omitempty"`
	Found     []string `json:"found"` // relevant TXT values at the name, strings joined
	Detail    string   `json:"detail,omitempty"`
	Temporary bool     `json:"temporary,omitempty"` // failed because the lookup itself failed
}

// Check returns the check called name.
func (r Result) Check(name string) (Check, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

// Resolver queries one configured DNS server, or the system's.
type Resolver struct {
	// Addr is the recursive resolver as host:port (port 53 if omitted).
	// Empty means the nameservers of ResolvConf.
	Addr string
	// ResolvConf defaults to /etc/resolv.conf.
	ResolvConf string
	// Timeout bounds each query to each server (default 1 s). A check
	// tries the servers in turn, and the four checks run concurrently, so a
	// dead resolver costs about one Timeout per configured server.
	Timeout time.Duration
}

// Verify looks up the four records Records describes and reports each.
// Checks never return an error: every failure, including DNS failures, is
// a failed check with a Detail, because that is what the team needs to see.
func (r *Resolver) Verify(ctx context.Context, domain, selector, token, dkimTXT string) Result {
	domain = normalize(domain)
	checks := []Check{
		{Name: CheckVerification, Record: "_smtpmux." + domain, Required: true, Expected: VerificationPrefix + token},
		{Name: CheckDKIM, Record: normalize(selector) + "._domainkey." + domain, Required: true, Expected: dkimTXT},
		{Name: CheckSPF, Record: domain},
		{Name: CheckDMARC, Record: "_dmarc." + domain},
	}
	var wg sync.WaitGroup
	for i := range checks {
		wg.Add(1)
		go func(c *Check) {
			defer wg.Done()
			txts, err := r.LookupTXT(ctx, c.Record)
			judge(c, txts, err)
		}(&checks[i])
	}
	wg.Wait()
	res := Result{Domain: domain, Checks: checks, Verified: true}
	for _, c := range checks {
		if c.Required && c.Status != StatusPass {
			res.Verified = false
			res.Temporary = res.Temporary || c.Temporary
		}
	}
	if res.Verified {
		res.Temporary = false
	}
	return res
}

// judge fills in the status of c from the TXT values found at its name.
func judge(c *Check, txts []string, err error) {
	c.Status, c.Found = StatusFail, []string{}
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			c.Detail = "no such name (NXDOMAIN)"
		} else {
			c.Detail = "lookup failed: " + err.Error()
			c.Temporary = true
		}
		return
	}
	var match []string
	switch c.Name {
	case CheckVerification:
		c.Found = txts
		if c.Expected == VerificationPrefix {
			c.Detail = "no verification token configured for this domain"
			return
		}
		for _, t := range txts {
			if strings.TrimSpace(t) == c.Expected {
				c.Status = StatusPass
				return
			}
		}
		c.Detail = "no TXT record equals " + c.Expected
		return
	case CheckDKIM:
		c.Found = txts
		switch {
		case len(txts) == 0:
			c.Detail = "no TXT record"
		case len(txts) > 1:
			c.Detail = "several TXT records; DKIM verifiers reject the key when there is more than one"
		case !sameDKIMKey(txts[0], c.Expected):
			c.Detail = "the published key does not match this domain's key"
		default:
			c.Status = StatusPass
		}
		return
	case CheckSPF:
		match = withPrefix(txts, "v=spf1")
	case CheckDMARC:
		match = withPrefix(txts, "v=DMARC1")
	}
	c.Found = match
	switch len(match) {
	case 1:
		c.Status = StatusPass
	case 0:
		c.Detail = "no " + strings.ToUpper(c.Name) + " record"
	default:
		// RFC 7208 §4.5 and RFC 7489 §6.6.3: several records is an error.
		c.Detail = "several " + strings.ToUpper(c.Name) + " records; receivers treat that as an error"
	}
}

// withPrefix keeps the values whose first tag is prefix (case-insensitive,
// as receivers compare it).
func withPrefix(txts []string, prefix string) []string {
	var out []string
	for _, t := range txts {
		t = strings.TrimSpace(t)
		if len(t) >= len(prefix) && strings.EqualFold(t[:len(prefix)], prefix) &&
			(len(t) == len(prefix) || t[len(prefix)] == ' ' || t[len(prefix)] == ';') {
			out = append(out, t)
		}
	}
	return out
}

// sameDKIMKey compares two DKIM key records by meaning: same key type and
// same public key, whatever the tag order, spacing or string splitting.
func sameDKIMKey(found, want string) bool {
	f, w := dkimTags(found), dkimTags(want)
	if f["v"] != "" && f["v"] != "DKIM1" {
		return false
	}
	kf, kw := f["k"], w["k"]
	if kf == "" {
		kf = "rsa"
	}
	if kw == "" {
		kw = "rsa"
	}
	return f["p"] != "" && f["p"] == w["p"] && strings.EqualFold(kf, kw)
}

// dkimTags parses a tag=value list (RFC 6376 §3.2), dropping all white
// space inside values since base64 keys may be wrapped anywhere.
func dkimTags(s string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		m[strings.TrimSpace(k)] = strings.Join(strings.Fields(v), "")
	}
	return m
}

// LookupTXT is the package-level LookupTXT on this resolver. Errors are
// *net.DNSError so callers (and go-msgauth) can tell "no such name"
// (IsNotFound) from "try again" (IsTemporary/IsTimeout).
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	servers, err := r.servers()
	if err != nil {
		return nil, &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	q.SetEdns0(1232, false) // the DNS Flag Day 2020 size: no IP fragmentation
	var last *net.DNSError
	for _, srv := range servers {
		in, err := r.exchange(ctx, q, srv)
		if err != nil {
			var ne net.Error
			last = &net.DNSError{Err: err.Error(), Name: name, Server: srv, IsTemporary: true,
				IsTimeout: errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)}
			continue
		}
		switch in.Rcode {
		case dns.RcodeSuccess:
			var out []string
			for _, rr := range in.Answer {
				if t, ok := rr.(*dns.TXT); ok {
					out = append(out, strings.Join(t.Txt, ""))
				}
			}
			return out, nil
		case dns.RcodeNameError:
			return nil, &net.DNSError{Err: "no such host", Name: name, Server: srv, IsNotFound: true}
		default: // SERVFAIL, REFUSED...: another server may do better
			last = &net.DNSError{Err: "server answered " + dns.RcodeToString[in.Rcode], Name: name, Server: srv, IsTemporary: true}
		}
	}
	return nil, last
}

// exchange sends q over UDP and repeats it over TCP when the answer comes
// back truncated: a 2048-bit DKIM key plus overhead can exceed what a
// resolver will put in a datagram.
func (r *Resolver) exchange(ctx context.Context, q *dns.Msg, srv string) (*dns.Msg, error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	c := &dns.Client{Net: "udp", Timeout: timeout}
	in, _, err := c.ExchangeContext(ctx, q, srv)
	if err == nil && in.Rcode == dns.RcodeFormatError && q.IsEdns0() != nil {
		// An old server that rejects EDNS: ask again plainly.
		plain := q.Copy()
		plain.Extra = nil
		in, _, err = c.ExchangeContext(ctx, plain, srv)
	}
	if err == nil && in.Truncated {
		c.Net = "tcp"
		in, _, err = c.ExchangeContext(ctx, q, srv)
	}
	return in, err
}

// servers lists the host:port addresses to query, in order.
func (r *Resolver) servers() ([]string, error) {
	if r.Addr != "" {
		if _, _, err := net.SplitHostPort(r.Addr); err != nil {
			return []string{net.JoinHostPort(strings.Trim(r.Addr, "[]"), "53")}, nil
		}
		return []string{r.Addr}, nil
	}
	path := r.ResolvConf
	if path == "" {
		path = "/etc/resolv.conf"
	}
	cfg, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(cfg.Servers) == 0 {
		return nil, fmt.Errorf("no nameserver in %s", path)
	}
	out := make([]string, len(cfg.Servers))
	for i, s := range cfg.Servers {
		out[i] = net.JoinHostPort(s, cfg.Port)
	}
	return out, nil
}

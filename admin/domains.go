package admin

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/relay/dnscheck"
	"github.com/smtpmux/smtpmux/relay/shape"
	"github.com/smtpmux/smtpmux/store"
)

// Sending domains (SPEC §3 /domains, §6 DKIM). admin imports relay/shape
// and relay/dnscheck directly: unlike relay itself they are leaf packages
// that import nothing of smtpmux, so the rule "admin reaches the delivery
// side through small interfaces" is not at stake.

// Domain permissions (the catalogue in auth.go lists the resource).
// Verifying writes the check result, so it needs domain.update.
const (
	permDomainRead   = "domain.read"
	permDomainCreate = "domain.create"
	permDomainUpdate = "domain.update"
	permDomainDelete = "domain.delete"
)

// maxDomainsPerTeam bounds domains per team: each costs a key generation
// and a DNS check every few hours.
const maxDomainsPerTeam = 100

// DKIM key algorithms POST /domains accepts; the first is the default
// because every receiver verifies RSA, while Ed25519 is not universal.
var dkimAlgorithms = []string{"rsa", "ed25519"}

// domainItem is the public shape of a domain. The private key is never
// part of it.
type domainItem struct {
	ID            string `json:"id"`
	Domain        string `json:"domain"`
	Status        string `json:"status"`
	DKIMAlgorithm string `json:"dkim_algorithm"`
	DKIMSelector  string `json:"dkim_selector"`
	// Records are the DNS records to publish (ownership TXT and DKIM key
	// required; SPF and DMARC suggested).
	Records []dnscheck.Record `json:"records"`
	// Checks are the per-record results of the last verification; null
	// before the first one.
	Checks        []dnscheck.Check `json:"checks"`
	LastCheckedAt *string          `json:"last_checked_at"`
	VerifiedAt    *string          `json:"verified_at"`
	CreatedAt     string           `json:"created_at"`
	UpdatedAt     string           `json:"updated_at"`
}

func domainView(d *store.Domain, spf []string) domainItem {
	it := domainItem{
		ID: d.ID, Domain: d.Domain, Status: d.Status, DKIMAlgorithm: d.Algorithm, DKIMSelector: d.Selector,
		Records:       domainRecords(d, spf),
		LastCheckedAt: rfc3339p(d.LastCheckedAt), VerifiedAt: rfc3339p(d.VerifiedAt),
		CreatedAt: rfc3339(d.CreatedAt), UpdatedAt: rfc3339(d.UpdatedAt),
	}
	var last dnscheck.Result
	if len(d.LastCheck) > 0 && json.Unmarshal(d.LastCheck, &last) == nil {
		it.Checks = last.Checks
	}
	return it
}

func domainRecords(d *store.Domain, spf []string) []dnscheck.Record {
	return dnscheck.Records(d.Domain, d.Selector, d.VerificationToken, d.DKIMPublicTXT, spf...)
}

// spfIncludes lists the SPF include: mechanisms for the upstreams the
// team's active providers send through, so the suggested SPF record
// authorises them. Custom SMTP hosts are unknown to us and left to the
// team.
func (s *Server) spfIncludes(teamID string) ([]string, error) {
	ps, err := s.st.Providers(teamID)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range ps {
		if p.Status != state.ProviderActive {
			continue
		}
		inc := ""
		switch p.Type {
		case store.TypeManagedSES, store.TypeSES:
			inc = "amazonses.com"
		case store.TypeGmail:
			inc = "_spf.google.com"
		case store.TypeOutlook:
			inc = "spf.protection.outlook.com"
		}
		if inc != "" && !slices.Contains(out, inc) {
			out = append(out, inc)
		}
	}
	slices.Sort(out)
	return out, nil
}

// domainInput is a decoded POST /domains body.
type domainInput struct{ domain, algorithm string }

func decodeDomain(c *call) (*domainInput, error) {
	o, err := httpapi.ReadBody(c.r)
	if err != nil {
		return nil, err
	}
	if err := o.Allow("domain", "dkim_algorithm"); err != nil {
		return nil, err
	}
	name, err := httpapi.Field[string](o, "domain")
	if err != nil {
		return nil, err
	}
	alg, err := httpapi.Field[string](o, "dkim_algorithm")
	if err != nil {
		return nil, err
	}
	in := &domainInput{domain: store.NormalizeDomain(name.V), algorithm: strings.ToLower(strings.TrimSpace(alg.V))}
	v := &httpapi.Validator{}
	switch {
	case in.domain == "":
		v.Add("domain", httpapi.FieldRequired, "domain is required")
	case !httpapi.ValidDomain(in.domain) || !dnscheck.ValidDomain(in.domain):
		v.Add("domain", httpapi.FieldInvalidHost, "domain must be a domain name such as example.com (internationalised names in xn-- form)")
	}
	if in.algorithm == "" {
		in.algorithm = dkimAlgorithms[0]
	} else if !slices.Contains(dkimAlgorithms, in.algorithm) {
		v.Add("dkim_algorithm", httpapi.FieldNotSupported, "dkim_algorithm must be rsa or ed25519")
	}
	return in, v.Err()
}

func (s *Server) createDomain(c *call) error {
	in, err := decodeDomain(c)
	if err != nil {
		return err
	}
	// Answer a duplicate before spending a key generation on it; the
	// store checks again atomically.
	if _, err := s.st.DomainByName(c.team(), in.domain); err == nil {
		return httpapi.ErrConflict("domain " + in.domain + " already exists in this team")
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	signer, pubTXT, err := shape.GenerateKey(in.algorithm)
	if err != nil {
		return err
	}
	pem, err := shape.MarshalPrivateKey(signer)
	if err != nil {
		return err
	}
	now := s.now()
	d := &store.Domain{
		ID: store.NewID(store.PrefixDomain), TeamID: c.team(), Domain: in.domain,
		Selector: "smx" + randomLower(6), Algorithm: in.algorithm, VerificationToken: randomHex(16),
		DKIMPublicTXT: pubTXT, PrivateKeySealed: s.opts.Sealer.Seal(string(pem)),
		Status: store.DomainPending, CreatedAt: now, UpdatedAt: now,
	}
	switch err := s.st.CreateDomain(d, maxDomainsPerTeam); {
	case errors.Is(err, store.ErrConflict):
		return httpapi.ErrConflict("domain " + in.domain + " already exists in this team")
	case errors.Is(err, store.ErrLimit):
		return httpapi.ErrLimitExceeded("a team may have at most 100 domains")
	case err != nil:
		return err
	}
	s.log.Info("domain created", "request_id", c.reqID, "domain_id", d.ID, "domain", d.Domain, "team", d.TeamID)
	return s.res.domains.answer(c, http.StatusCreated, d)
}

func (s *Server) listDomains(c *call) error {
	pg, err := parsePage(c.r)
	if err != nil {
		return err
	}
	all, err := s.st.Domains(c.team())
	if err != nil {
		return err
	}
	spf, err := s.spfIncludes(c.team())
	if err != nil {
		return err
	}
	items, pag := paginate(all, func(d *store.Domain) string { return d.ID }, pg)
	out := make([]domainItem, 0, len(items))
	for _, d := range items {
		out = append(out, domainView(d, spf))
	}
	c.list(out, pag)
	return nil
}

// domainZoneFile answers the records as a BIND zone snippet (text/plain),
// for pasting into a zone file. Errors stay JSON like everywhere else.
func (s *Server) domainZoneFile(c *call) error {
	d, err := s.res.domains.load(c)
	if err != nil {
		return err
	}
	spf, err := s.spfIncludes(c.team())
	if err != nil {
		return err
	}
	h := c.w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Disposition", `inline; filename="`+d.Domain+`.zone"`)
	h.Set("Cache-Control", "no-store")
	c.w.WriteHeader(http.StatusOK)
	io.WriteString(c.w, dnscheck.ZoneFile(domainRecords(d, spf)))
	return nil
}

// randomHex returns n random bytes as hex: the ownership token, which only
// needs to be unguessable by other teams.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// randomLower returns n random characters of [a-z0-9]: a DKIM selector
// suffix. A fresh selector per domain lets a team re-add a domain (new
// key) without colliding with the old record still cached in DNS.
func randomLower(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

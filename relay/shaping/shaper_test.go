package shaping

import (
	"bytes"
	"errors"
	"io"
	"mime/quotedprintable"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/relay/oauth/mailapi"
	"github.com/smtpmux/smtpmux/relay/shape"
	"github.com/smtpmux/smtpmux/store"
)

// The relay takes it through this interface.
var _ relay.Shaper = (*Shaper)(nil)

type env struct {
	t      *testing.T
	st     *store.Store
	sealer *store.Sealer
	sh     *Shaper
	pub    map[string]string // DNS name → DKIM TXT, for the verifier
}

func newEnv(t *testing.T) *env {
	st, err := store.Open(filepath.Join(t.TempDir(), "s.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sealer, err := store.NewSealer("shaping-test-secret-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, st: st, sealer: sealer, sh: New(st, sealer, TrackingKey("shaping-test-secret-0123456789"), nil),
		pub: map[string]string{}}
}

// addDomain stores a domain of team with a fresh key in the given status.
func (e *env) addDomain(team, name, status string) *store.Domain {
	e.t.Helper()
	signer, pub, err := shape.GenerateKey("ed25519")
	if err != nil {
		e.t.Fatal(err)
	}
	pem, _ := shape.MarshalPrivateKey(signer)
	d := &store.Domain{ID: store.NewID(store.PrefixDomain), TeamID: team, Domain: name, Selector: "smxtest",
		Algorithm: "ed25519", VerificationToken: "tok", DKIMPublicTXT: pub, PrivateKeySealed: e.sealer.Seal(string(pem)),
		Status: status, CreatedAt: time.Now()}
	if err := e.st.CreateDomain(d, 0); err != nil {
		e.t.Fatal(err)
	}
	e.pub["smxtest._domainkey."+name] = pub
	return d
}

// verify checks msg's DKIM signatures against the stored domains' keys.
func (e *env) verify(msg []byte) []*dkim.Verification {
	e.t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if v, ok := e.pub[name]; ok {
			return []string{v}, nil
		}
		return nil, errors.New("no such record")
	}})
	if err != nil {
		e.t.Fatal(err)
	}
	return vs
}

func msg(id, team string) *store.Message {
	return &store.Message{ID: id, TeamID: team, From: "bounce@env.example",
		Recipients: []store.Recipient{{Address: "b@x.y", Status: state.MessagePending}}}
}

const htmlMail = "To: bob@example.net\r\nSubject: Sale\r\nMessage-ID: <m1@x>\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
	"<p><a href=3D\"https://shop.example/sale?id=3D7\">Sale</a> <a href=3D\"mailto:x@y.z\">mail</a>" +
	" <a href=3D\"http://other.example/\">other</a></p>\r\n"

var linkRe = regexp.MustCompile(`https://t\.news\.example/t/([A-Za-z0-9_-]+)`)

func TestShapeDefaultsLinksAndSignature(t *testing.T) {
	e := newEnv(t)
	e.addDomain("team_a", "news.example", store.DomainVerified)
	p := &store.Provider{ID: "dprov_1", Type: store.TypeSMTP, FromEmail: "hello@News.Example", FromName: "News",
		ReplyToEmail: "help@news.example", TrackingDomain: "t.news.example"}
	m := msg("eml_one", "team_a")
	out, from, err := e.sh.Shape(m, p, []byte(htmlMail))
	if err != nil || from != "hello@news.example" {
		t.Fatalf("shape: %v %q", err, from)
	}
	s := string(out)
	if !strings.Contains(s, "From: \"News\" <hello@News.Example>\r\n") {
		t.Fatalf("From default missing:\n%s", s)
	}
	if !strings.Contains(s, "Reply-To: <help@news.example>\r\n") && !strings.Contains(s, "Reply-To: help@news.example\r\n") {
		t.Fatalf("Reply-To default missing:\n%s", s)
	}
	// Two web links rewritten with the deterministic tokens; mailto kept.
	html := decodedBody(t, out)
	toks := linkRe.FindAllStringSubmatch(html, -1)
	if len(toks) != 2 || toks[0][1] != Token(e.sh.key, "eml_one", 0, "t.news.example") || toks[1][1] != Token(e.sh.key, "eml_one", 1, "t.news.example") ||
		!strings.Contains(html, "mailto:x@y.z") || strings.Contains(html, "shop.example") {
		t.Fatalf("links: %v\n%s", toks, html)
	}
	for i, want := range []string{"https://shop.example/sale?id=7", "http://other.example/"} {
		l, err := e.st.TrackingLinkByToken(toks[i][1])
		if err != nil || l.URL != want || l.MessageID != "eml_one" || l.TeamID != "team_a" || l.Index != i ||
			l.Host != "t.news.example" {
			t.Fatalf("stored link %d: %v %+v", i, err, l)
		}
	}
	// Signed by the verified From domain, and the signature holds.
	vs := e.verify(out)
	if len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "news.example" {
		t.Fatalf("signature: %+v", vs)
	}
	tampered := bytes.Replace(out, []byte(">Sale<"), []byte(">Sald<"), 1)
	if vs := e.verify(tampered); len(vs) != 1 || vs[0].Err == nil {
		t.Fatal("a changed body still verifies")
	}

	// A retry through the same provider sends the same bytes (the
	// signature's t= aside) and stores nothing new.
	again, _, err := e.sh.Shape(m, p, []byte(htmlMail))
	if err != nil || !bytes.Equal(unsigned(again), unsigned(out)) {
		t.Fatalf("retry differs: %v\n%s\n---\n%s", err, again, out)
	}
	if ls, _ := e.st.TrackingLinks("eml_one"); len(ls) != 2 {
		t.Fatalf("links stored: %d", len(ls))
	}
}

// decodedBody returns the quoted-printable body of a single-part message.
func decodedBody(t *testing.T, msg []byte) string {
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	b, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(msg[i+4:])))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// unsigned drops the DKIM-Signature field (always the first one Sign
// prepends) so two shapings can be compared.
func unsigned(msg []byte) []byte {
	if !bytes.HasPrefix(msg, []byte("DKIM-Signature:")) {
		return msg
	}
	i := bytes.Index(msg, []byte("\r\n"))
	for i >= 0 && i+2 < len(msg) && (msg[i+2] == ' ' || msg[i+2] == '\t') {
		j := bytes.Index(msg[i+2:], []byte("\r\n"))
		i += 2 + j
	}
	return msg[i+2:]
}

func TestShapeLeavesWhatItMustNotTouch(t *testing.T) {
	e := newEnv(t)
	e.addDomain("team_a", "pending.example", store.DomainPending)
	e.addDomain("team_b", "other.example", store.DomainVerified)
	plain := "From: App <app@pending.example>\r\nTo: b@x.y\r\nSubject: hi\r\n\r\nhi https://x.example/\r\n"

	// Unverified domain, no defaults, no tracking: bytes unchanged.
	out, from, err := e.sh.Shape(msg("eml_a", "team_a"), &store.Provider{ID: "p", Type: store.TypeSMTP, FromEmail: "x@y.example"}, []byte(plain))
	if err != nil || string(out) != plain || from != "app@pending.example" {
		t.Fatalf("unverified: %v %q\n%s", err, from, out)
	}
	// Another team's verified domain does not sign this team's mail.
	other := strings.Replace(plain, "pending.example", "other.example", 1)
	if out, _, _ := e.sh.Shape(msg("eml_b", "team_a"), &store.Provider{ID: "p", Type: store.TypeSMTP}, []byte(other)); string(out) != other {
		t.Fatalf("signed with another team's domain:\n%s", out)
	}
	// Already-signed mail keeps its links (and gets no new tokens).
	signed := "DKIM-Signature: v=1; a=rsa-sha256; d=x.example; s=a; b=abc; bh=def; h=from\r\n" + htmlMail
	p := &store.Provider{ID: "p", Type: store.TypeSMTP, TrackingDomain: "t.news.example"}
	if out, _, err := e.sh.Shape(msg("eml_c", "team_a"), p, []byte(signed)); err != nil || string(out) != signed {
		t.Fatalf("signed mail rewritten: %v\n%s", err, out)
	}
	if ls, _ := e.st.TrackingLinks("eml_c"); len(ls) != 0 {
		t.Fatalf("links stored for untouched mail: %d", len(ls))
	}
	// No From header and no default: sent_from falls back to the envelope.
	if _, from, err := e.sh.Shape(msg("eml_d", "team_a"), &store.Provider{ID: "p"}, []byte("To: b@x.y\r\n\r\nhi\r\n")); err != nil || from != "bounce@env.example" {
		t.Fatalf("no From: %v %q", err, from)
	}
}

func TestShapeConnectedAccountAndConfigFaults(t *testing.T) {
	e := newEnv(t)
	e.addDomain("team_a", "gmail-team.example", store.DomainVerified)
	body := "From: \"Ann\" <ann@elsewhere.example>\r\nSender: s@elsewhere.example\r\nTo: b@x.y, gone@x.y\r\n" +
		"Subject: s\r\n\r\nhello\r\n"
	p := &store.Provider{ID: "dprov_g", Type: store.TypeGmail, OAuthEmail: "ann@gmail-team.example", FromEmail: "ignored@x.example"}
	out, from, err := e.sh.Shape(msg("eml_g", "team_a"), p, []byte(body))
	if err != nil || from != "ann@gmail-team.example" || !strings.Contains(string(out), "From: \"Ann\" <ann@gmail-team.example>\r\n") ||
		strings.Contains(string(out), "elsewhere.example") || strings.Contains(string(out), "gone@x.y") {
		t.Fatalf("oauth: %v %q\n%s", err, from, out)
	}
	// The authorised address's domain is verified, so the message is
	// signed, and the provider's own Prepare pass keeps the signature.
	if vs := e.verify(out); len(vs) != 1 || vs[0].Err != nil {
		t.Fatalf("oauth signature: %+v", vs)
	}
	sent, err := mailapi.Prepare(out, p.OAuthEmail, []string{"b@x.y"})
	if err != nil || !bytes.Equal(sent, out) {
		t.Fatalf("provider pass changed the shaped message: %v\n%s", err, sent)
	}

	// An invalid provider default is a configuration fault: an error, and
	// the bytes handed back are the original ones.
	bad := &store.Provider{ID: "dprov_bad", Type: store.TypeSMTP, FromEmail: "not an address"}
	noFrom := []byte("To: b@x.y\r\n\r\nhi\r\n")
	out, _, err = e.sh.Shape(msg("eml_x", "team_a"), bad, noFrom)
	if !errors.Is(err, shape.ErrBadAddress) || !bytes.Equal(out, noFrom) {
		t.Fatalf("bad default: %v\n%s", err, out)
	}
	badOAuth := &store.Provider{ID: "dprov_bo", Type: store.TypeOutlook, OAuthEmail: "x\r\nBcc: evil@x.y"}
	if out, _, err := e.sh.Shape(msg("eml_y", "team_a"), badOAuth, []byte(body)); err == nil || string(out) != body {
		t.Fatalf("bad authorised address: %v", err)
	}
}

func TestTokenIsKeyedAndDeterministic(t *testing.T) {
	k1, k2 := TrackingKey("secret-one-0123456789"), TrackingKey("secret-two-0123456789")
	a := Token(k1, "eml_x", 0, "t.example")
	if a != Token(k1, "eml_x", 0, "t.example") || a == Token(k2, "eml_x", 0, "t.example") || a == Token(k1, "eml_x", 1, "t.example") || a == Token(k1, "eml_y", 0, "t.example") ||
		a == Token(k1, "eml_x", 0, "u.example") {
		t.Fatal("token not a keyed function of message, index and host")
	}
	if len(a) != 22 || strings.ContainsAny(a, "+/=") {
		t.Fatalf("token %q", a)
	}
	// "eml_x" + "1" + "0" must not collide with "eml_x1" + "0".
	if Token(k1, "eml_x", 10, "t.example") == Token(k1, "eml_x1", 0, "t.example") {
		t.Fatal("ambiguous token input")
	}
}

// Links are bound to the tracking domain they were rewritten for and carry
// the configured expiry; failover to a provider with another tracking
// domain mints other tokens, bound to that domain, instead of reusing
// links that could not redirect there.
func TestTrackingLinksBoundToHostWithExpiry(t *testing.T) {
	e := newEnv(t)
	e.sh.linkTTL = 48 * time.Hour
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	e.sh.now = func() time.Time { return now }
	m := msg("eml_bound", "team_a")
	hostOf := func(p *store.Provider) []*store.TrackingLink {
		t.Helper()
		out, _, err := e.sh.Shape(m, p, []byte(htmlMail))
		if err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(`https://` + regexp.QuoteMeta(strings.ToLower(p.TrackingDomain)) + `/t/([A-Za-z0-9_-]+)`)
		var ls []*store.TrackingLink
		for _, tok := range re.FindAllStringSubmatch(decodedBody(t, out), -1) {
			l, err := e.st.TrackingLinkByToken(tok[1])
			if err != nil {
				t.Fatal(err)
			}
			ls = append(ls, l)
		}
		if len(ls) != 2 {
			t.Fatalf("links for %s: %d", p.TrackingDomain, len(ls))
		}
		return ls
	}
	a := hostOf(&store.Provider{ID: "dprov_a", Type: store.TypeSMTP, TrackingDomain: "T.A.example"})
	b := hostOf(&store.Provider{ID: "dprov_b", Type: store.TypeSMTP, TrackingDomain: "t.b.example"})
	for i := range a {
		if a[i].Host != "t.a.example" || b[i].Host != "t.b.example" || a[i].Token == b[i].Token {
			t.Fatalf("link %d: %+v / %+v", i, a[i], b[i])
		}
		if a[i].ExpiresAt == nil || !a[i].ExpiresAt.Equal(now.Add(48*time.Hour)) {
			t.Fatalf("expiry of link %d: %v", i, a[i].ExpiresAt)
		}
	}
}

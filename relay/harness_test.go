package relay

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// fakeProvider records sends and answers what the test scripts.
type fakeProvider struct {
	mu     sync.Mutex
	sent   []Envelope
	bodies [][]byte
	times  []time.Time
	// answer, when set, decides each send's outcome.
	answer func(n int, env Envelope) (*Result, error)
}

func (f *fakeProvider) Send(_ context.Context, env Envelope, body []byte) (*Result, error) {
	f.mu.Lock()
	n := len(f.sent)
	f.sent = append(f.sent, env)
	f.bodies = append(f.bodies, bytes.Clone(body)) // body is only valid during Send
	f.times = append(f.times, time.Now())
	answer := f.answer
	f.mu.Unlock()
	if answer != nil {
		return answer(n, env)
	}
	return &Result{Reply: "250 2.0.0 Ok: queued as FAKE", UpstreamID: "FAKE"}, nil
}

func (f *fakeProvider) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sent)
}

// harness is a relay with a store, a scheduler and one fake upstream type.
type harness struct {
	t      testing.TB
	store  *store.Store
	srv    *Server
	sched  *Scheduler
	fake   *fakeProvider // the first provider's upstream
	fakes  map[string]*fakeProvider
	fakeMu sync.Mutex
	team   string
	secret string
	keyID  string
	provID string
	addr   string
}

func newHarness(t *testing.T, mutate func(*Config)) *harness {
	t.Helper()
	return newHarnessSched(t, mutate, nil)
}

// newHarnessSched is newHarness with the scheduler's settings adjusted by
// sched (the harness default retries after 50 ms).
func newHarnessSched(t *testing.T, mutate func(*Config), sched func(*SchedulerConfig)) *harness {
	t.Helper()
	return newHarnessClock(t, mutate, sched, nil)
}

// newHarnessClock is newHarnessSched with the relay's clock (the
// scheduler's and the server's) read from now (nil: the real one).
func newHarnessClock(t testing.TB, mutate func(*Config), sched func(*SchedulerConfig), now func() time.Time) *harness {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "relay.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sealer, _ := store.NewSealer("test-secret-key-0123456789")
	h := &harness{t: t, store: st, fakes: map[string]*fakeProvider{}, team: store.NewID(store.PrefixTeam)}
	reg := NewRegistry(st, sealer)
	reg.Register("fake", func(p *store.Provider, _ string) (Provider, error) { return h.upstream(p.ID), nil })
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	scfg := SchedulerConfig{RetrySchedule: []time.Duration{50 * time.Millisecond, 50 * time.Millisecond}, IdlePoll: 20 * time.Millisecond}
	if sched != nil {
		sched(&scfg)
	}
	h.sched = NewScheduler(scfg, st, reg, logger, now)
	cfg := Config{Hostname: "relay.test", Listen: []string{"127.0.0.1:0"}, AllowInsecureAuth: true,
		MaxMessageBytes: 64 << 10, MaxRecipients: 5, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		MaxConnections: 20, AuthFailDelay: 10 * time.Millisecond}
	if mutate != nil {
		mutate(&cfg)
	}
	h.srv = NewServer(cfg, st, reg, h.sched, logger, now)
	h.provID = h.addProvider("fake", nil)
	h.fake = h.upstream(h.provID)
	h.secret = store.NewSecret(store.SecretPrefixSending)
	h.keyID = store.NewID(store.PrefixKey)
	if err := st.CreateKey(&store.APIKey{ID: h.keyID, TeamID: h.team, Type: store.KeySending,
		Hash: store.HashSecret(h.secret), SendScope: store.Scope{Type: "all"}, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Start(); err != nil {
		t.Fatal(err)
	}
	h.addr = h.srv.Addrs()[0].String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.sched.Run(ctx); close(done) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer scancel()
		h.srv.Shutdown(sctx)
		cancel()
		<-done
		h.sched.Stop(sctx)
		st.Close()
	})
	return h
}

// updateProvider edits the harness's first provider.
func (h *harness) updateProvider(fn func(p *store.Provider)) {
	h.t.Helper()
	if _, err := h.store.UpdateProvider("", h.provID, 0, func(p *store.Provider) error { fn(p); return nil }); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) addProvider(typ string, weight *int) string {
	return h.addProviderWith(&store.Provider{Type: typ, Percentage: weight})
}

func (h *harness) addProviderWith(p *store.Provider) string {
	p.ID, p.TeamID, p.Status, p.CreatedAt = store.NewID(store.PrefixProvider), h.team, state.ProviderActive, time.Now()
	if p.Type == "" {
		p.Type = "fake"
	}
	id := p.ID
	if err := h.store.CreateProvider(p); err != nil {
		h.t.Fatal(err)
	}
	return id
}

// upstream returns the fake upstream of provider id.
func (h *harness) upstream(id string) *fakeProvider {
	h.fakeMu.Lock()
	defer h.fakeMu.Unlock()
	f, ok := h.fakes[id]
	if !ok {
		f = &fakeProvider{}
		h.fakes[id] = f
	}
	return f
}

// dial opens an SMTP client, authenticated with secret unless it is "".
func (h *harness) dial(secret string) *smtp.Client {
	h.t.Helper()
	c, err := smtp.Dial(h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		h.t.Fatal(err)
	}
	if secret != "" {
		if err := c.Auth(sasl.NewPlainClient("", "anyone", secret)); err != nil {
			h.t.Fatal(err)
		}
	}
	return c
}

// send runs one transaction and returns the final DATA reply or the first error.
func send(c *smtp.Client, from string, to []string, body string) (string, error) {
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return "", err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := io.WriteString(w, body); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	return resp.StatusText, nil
}

// waitMessage waits until message id reaches a final state.
func (h *harness) waitMessage(id string) *store.Message {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		m, err := h.store.Message(id)
		if err == nil && m.State == store.StateDone {
			return m
		}
		time.Sleep(5 * time.Millisecond)
	}
	m, _ := h.store.Message(id)
	h.t.Fatalf("message %s not done: %+v", id, m)
	return nil
}

func smtpCode(err error) int {
	if se, ok := err.(*smtp.SMTPError); ok {
		return se.Code
	}
	return 0
}

var _ = tls.VersionTLS12
var _ = routing.Transient

func plainAuth(secret string) sasl.Client { return sasl.NewPlainClient("", "u", secret) }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

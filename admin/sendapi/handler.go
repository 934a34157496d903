package sendapi

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/store"
)

// Config is what the operator sets for the Sending API.
type Config struct {
	// Sender is the relay side (/emails/send…); nil answers those
	// endpoints with 503.
	Sender Sender
	// Hostname is the right side of the Message-ID of HTTP sends; empty
	// uses the sender's domain.
	Hostname string
	// MaxBytesInFlight bounds the request bytes that HTTP sends hold at
	// once; past it a send gets 503 with Retry-After. 0 means 64 MiB.
	MaxBytesInFlight int64
	// BodyTimeout is how long an HTTP send's body may take to arrive
	// beyond what its size needs at 32 KiB/s (never past the body read
	// deadline): a send that stalls is cut off after it. 0 means 60 s. It
	// applies where Deadlines.Body does.
	BodyTimeout time.Duration
}

// Options configure a Handler: the Config, and what it shares with the
// server that mounts it.
type Options struct {
	Config
	// Store is read to recognise (and refuse) root keys. Required.
	Store *store.Store
	// Idempotency is the server's idempotency layer. Required.
	Idempotency *httpapi.Idempotency
	// Logger nil discards; Now nil is time.Now.
	Logger *slog.Logger
	Now    func() time.Time
	// AuthAttempts limits failed authentications per client address.
	AuthAttempts httpapi.AuthAttempts
	// Deadlines are the server's body read deadlines.
	Deadlines httpapi.Deadlines
}

// Handler serves the Sending API: POST /api/v1/emails/send and
// /api/v1/emails/send/batch. It expects the mounting server to have set
// the request's httpapi.Info (request ID, start) and the unauthenticated
// read deadline; it authenticates, rate-limits, reads the body within the
// send budget and its pace, and answers in the SPEC §3 envelope.
type Handler struct {
	opts Options
	log  *slog.Logger
	// sendBytes bounds the request bytes of HTTP sends in progress.
	sendBytes *sendBudget
}

// New builds a Handler from opts, filling defaults.
func New(opts Options) *Handler {
	if opts.Store == nil || opts.Idempotency == nil {
		panic("sendapi.New: Options.Store and Options.Idempotency are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBytesInFlight <= 0 {
		opts.MaxBytesInFlight = defaultSendBytesInFlight
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = defaultSendBodyTimeout
	}
	return &Handler{opts: opts, log: opts.Logger, sendBytes: &sendBudget{limit: opts.MaxBytesInFlight}}
}

// Send is POST /api/v1/emails/send.
func (s *Handler) Send() http.Handler { return s.route(s.sendEmail) }

// Batch is POST /api/v1/emails/send/batch.
func (s *Handler) Batch() http.Handler { return s.route(s.sendBatch) }

func (s *Handler) now() time.Time { return s.opts.Now().UTC() }

// call is one Sending API request being served.
type call struct {
	w     http.ResponseWriter
	r     *http.Request
	reqID string
	send  *Credential // the authenticated sender
}

func (c *call) ok(status int, data any) { httpapi.WriteOK(c.w, c.reqID, status, data) }

// route authenticates and rate-limits (sendAuth), then runs h with the
// body read within the send budget and its pace (sendbudget.go) and
// through the idempotency layer. A send refused before its body was read
// (authentication, rate, budget) is answered without reading the rest.
func (s *Handler) route(h func(*call) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{w: w, r: r, reqID: httpapi.RequestID(r)}
		err := s.sendAuth(c)
		if err != nil {
			httpapi.RefuseUnread(w, r, err)
		} else {
			s.opts.Deadlines.Authenticated(w, r)
			err = s.serve(c, h)
		}
		if err != nil {
			httpapi.Fail(s.log, w, r, err)
		}
	})
}

func (s *Handler) serve(c *call, h func(*call) error) error {
	bb, release := s.reserveSend(c)
	defer release()
	err := s.opts.Idempotency.Serve(c.w, c.r, c.send.ID, c.send.TeamID, maxSendBodyBytes, func(w http.ResponseWriter) error {
		real := c.w
		c.w = w
		defer func() { c.w = real }()
		return h(c)
	})
	if bb != nil && bb.refused {
		httpapi.RefuseUnread(c.w, c.r, err)
	}
	return err
}

// dayStart is 00:00 UTC of t's day, when the daily limit resets.
func dayStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// InFlight is how many request bytes HTTP sends in progress hold now, in
// the send budget (a test seam: tests wait on it instead of sleeping).
func (s *Handler) InFlight() int64 { return s.sendBytes.inFlight() }

package httpapi

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// Idempotency (SPEC §3). A POST carrying an Idempotency-Key runs once per
// key and credential within idempotencyTTL: retries with the same body get
// the first answer replayed byte for byte (status, body, and the headers in
// replayedHeaders), a different body or a retry while the first request is
// still running gets 409 idempotency_conflict.
const (
	idempotencyTTL          = store.IdempotencyTTL
	maxIdempotencyKey       = 255
	headerIdempotencyKey    = "Idempotency-Key"
	codeIdempotencyConflict = "idempotency_conflict"
)

// replayedHeaders are the handler-set headers that are part of an answer.
// Rate-limit headers are not: they describe the retry, not the answer.
var replayedHeaders = []string{"Content-Type", "Cache-Control", "X-Content-Type-Options", "Location", "ETag", "X-Request-Id"}

// IdempotencyRecords is where the layer keeps its records: the node's
// store (*store.Store) on a single node; in cluster mode etcd
// (cluster.Idempotency), so that a retry another node receives is
// recognised. Both keep the store's rules (BeginIdempotent).
type IdempotencyRecords interface {
	BeginIdempotent(credID, key string, hash []byte, owner string, now time.Time, ttl time.Duration) (*store.IdempotencyRecord, error)
	FinishIdempotent(credID, key, owner string, status int, header map[string]string, body []byte) error
	ReleaseIdempotent(credID, key, owner string) error
}

// IdempotencyBudget is implemented by records kept where space is shared
// by every team (etcd, in cluster mode): a team past its budget of kept
// records is refused a keyed request (429 limit_exceeded) rather than
// served without protection.
type IdempotencyBudget interface {
	// AdmitIdempotent reports whether team may have one more record
	// kept now; when not, the budget (bytes per 24 h) and when to retry.
	AdmitIdempotent(team string, now time.Time) (ok bool, budget int64, retry time.Duration)
	// ChargeIdempotent counts a kept record of about size bytes.
	ChargeIdempotent(team string, now time.Time, size int)
}

// Idempotency is the idempotency layer every POST of the Management and
// Sending APIs goes through. One per process: its boot ID names this
// process in in-flight records, so that records a dead process left in
// flight are recognised as abandoned.
type Idempotency struct {
	st     IdempotencyRecords
	sealer *store.Sealer
	log    *slog.Logger
	now    func() time.Time
	boot   string
}

// NewIdempotency makes the layer over records st; answers are sealed with sealer
// (they may carry secrets shown once). now is the clock (UTC is taken).
func NewIdempotency(st IdempotencyRecords, sealer *store.Sealer, log *slog.Logger, now func() time.Time) *Idempotency {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return &Idempotency{st: st, sealer: sealer, log: log, now: now, boot: hex.EncodeToString(b)}
}

// Serve runs h, through the idempotency layer when r asks for it. scope
// is the credential's ID (one client's keys never meet another's), team
// its team ("" for the operator: not budgeted), limit the request's body
// limit. Errors h returns are rendered into the
// answer that is stored; errors Serve returns (a bad key header, a body
// that cannot be read, a conflict) are the caller's to render.
func (ix *Idempotency) Serve(w http.ResponseWriter, r *http.Request, scope, team string, limit int64, h func(http.ResponseWriter) error) error {
	vals, has := r.Header[headerIdempotencyKey]
	if r.Method != http.MethodPost || !has {
		return h(w)
	}
	key := vals[0]
	if len(vals) != 1 || key == "" || len(key) > maxIdempotencyKey || !PrintableASCII(key) {
		return ErrInvalidParam(headerIdempotencyKey, "the Idempotency-Key header must be one value of 1 to %d printable ASCII characters", maxIdempotencyKey)
	}
	// The body is read here, once, to fingerprint it; the handler reads
	// the same bytes again from memory.
	body, err := ReadRaw(r, limit)
	if err != nil {
		return err
	}
	r.Body = &prereadBody{Reader: bytes.NewReader(body), data: body}
	r.ContentLength = int64(len(body))
	hh := sha256.New()
	io.WriteString(hh, r.Method+" "+r.URL.RequestURI()+"\n")
	hh.Write(body)
	hash := hh.Sum(nil)

	budget, _ := ix.st.(IdempotencyBudget)
	if budget != nil {
		if ok, total, retry := budget.AdmitIdempotent(team, ix.now().UTC()); !ok {
			return &Error{Status: http.StatusTooManyRequests, Code: CodeLimitExceeded, Param: headerIdempotencyKey,
				Retryable: true, RetryAfter: retry,
				Message: fmt.Sprintf("this team's Idempotency-Key budget (%d MiB of records kept per 24 h, cluster.idempotency_team_bytes) is used up; nothing was done: retry later or without the header", total>>20)}
		}
	}
	rec, err := ix.st.BeginIdempotent(scope, key, hash, ix.boot, ix.now().UTC(), idempotencyTTL)
	if err != nil {
		return err
	}
	if rec != nil {
		if !bytes.Equal(rec.RequestHash, hash) {
			return &Error{Status: http.StatusConflict, Code: codeIdempotencyConflict, Param: headerIdempotencyKey,
				Message: "this Idempotency-Key was already used with a different request; use a new key for a new request"}
		}
		if rec.State != store.IdemDone {
			return &Error{Status: http.StatusConflict, Code: codeIdempotencyConflict, Param: headerIdempotencyKey, Retryable: true,
				Message: "a request with this Idempotency-Key is still in progress; retry once it has finished"}
		}
		body, err := ix.sealer.Open(rec.Body)
		if err != nil {
			return err
		}
		ix.log.Info("idempotent replay", "request_id", RequestID(r), "key_id", scope, "status", rec.Status)
		replay(w, rec, []byte(body))
		return nil
	}

	// The answer is buffered, stored, and only then written: a client that
	// sees it and retries at once must find the record done, not in flight.
	cw := &captureWriter{ResponseWriter: w}
	done := false
	defer func() {
		if !done { // the handler panicked: let a retry run again
			_ = ix.st.ReleaseIdempotent(scope, key, ix.boot)
		}
	}()
	if err := h(cw); err != nil {
		Fail(ix.log, cw, r, err)
	}
	done = true
	if cw.status == 0 {
		cw.status = http.StatusOK
	}
	if storable(cw.status) {
		saved := map[string]string{}
		for _, name := range replayedHeaders {
			if v := w.Header().Get(name); v != "" {
				saved[name] = v
			}
		}
		// Sealed: answers may carry secrets shown once (a new key, a
		// webhook secret), which must not sit in the store in clear.
		sealed := ix.sealer.Seal(cw.buf.String())
		err = ix.st.FinishIdempotent(scope, key, ix.boot, cw.status, saved, sealed)
		if budget != nil {
			// About the record as kept: the body base64 in JSON, the
			// headers, the key twice (etcd key and record), the rest.
			size := len(sealed)*4/3 + 2*(len(scope)+len(key)) + 300
			for k, v := range saved {
				size += len(k) + len(v) + 6
			}
			budget.ChargeIdempotent(team, ix.now().UTC(), size)
		}
	} else {
		err = ix.st.ReleaseIdempotent(scope, key, ix.boot)
	}
	if err != nil {
		// The answer is still right and is sent; only its replay is at
		// risk (a retry may run the request again), which the log says.
		ix.log.Error("idempotency record not saved", "request_id", RequestID(r), "err", err)
	}
	w.WriteHeader(cw.status)
	w.Write(cw.buf.Bytes())
	return nil
}

// storable says which answers are kept and replayed: only successes (and
// redirects). An error answer did nothing: a 4xx (validation, auth,
// permissions, limits, a conflict) refused the request before it changed
// anything, a 5xx failed it, so a retry runs again and gets the same
// refusal (or, if what refused it changed meanwhile, its fresh outcome)
// without any risk of doing the work twice. Not keeping them bounds what
// one tenant can make the node keep (in etcd, in cluster mode, shared by
// every team) to requests that did something.
func storable(status int) bool {
	return status < http.StatusBadRequest
}

// replay writes a stored answer.
func replay(w http.ResponseWriter, rec *store.IdempotencyRecord, body []byte) {
	h := w.Header()
	for k, v := range rec.Header {
		h.Set(k, v)
	}
	h.Set("Idempotent-Replayed", "true")
	w.WriteHeader(rec.Status)
	w.Write(body)
}

// PrintableASCII reports whether s is all printable ASCII (0x20–0x7e).
func PrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// captureWriter buffers an answer. Headers go straight to the real writer's
// map (nothing is sent before WriteHeader).
type captureWriter struct {
	http.ResponseWriter
	status int
	buf    bytes.Buffer
}

func (w *captureWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *captureWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.buf.Write(b)
}

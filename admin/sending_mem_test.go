package admin

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math/rand"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/smtpmux/smtpmux/admin/sendapi"
)

// Memory of one large HTTP send (issue 12, item 10): the request is held
// once, the attachments are decoded in pieces straight into the MIME
// writer, and the MIME buffer is sized once, so one send allocates a
// little over twice its request size rather than several times it.

// sinkSender is a fakeSender that keeps only the last body, so a benchmark
// does not hold every message it sent.
type sinkSender struct {
	*fakeSender
	last []byte
}

func (s *sinkSender) Submit(cred *sendapi.Credential, from string, rcpts []string, body []byte) (string, error) {
	s.last = body
	return "eml_sink", nil
}

// largeSendBody is a send request with one attachment of n random bytes
// (a PDF, so the content sniffer lets it through).
func largeSendBody(t testing.TB, n int) (body, attachment []byte) {
	attachment = make([]byte, n)
	rand.New(rand.NewSource(1)).Read(attachment)
	copy(attachment, "%PDF-1.7\n")
	m := validSend()
	m["attachments"] = []any{map[string]any{"filename": "report.pdf",
		"content": base64.StdEncoding.EncodeToString(attachment)}}
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return body, attachment
}

func newSinkEnv(t testing.TB) (*testEnv, *sinkSender) {
	ss := &sinkSender{fakeSender: &fakeSender{}}
	e, _ := newSendEnv(t, func(o *Options) { o.Sending.Sender = ss; o.Sending.MaxBytesInFlight = 1 << 30 })
	return e, ss
}

// postRaw sends body to /emails/send with a Content-Length, as clients do.
func postRaw(e *testEnv, body []byte, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", "/api/v1/emails/send", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testSendKey)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	return rec
}

// allocatedBy reports the bytes the process allocated while f ran.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestLargeSendAllocation bounds what one send of an 8 MB attachment
// allocates: under three times its request size, with or without an
// Idempotency-Key (which reads the body first to fingerprint it). The
// attachment must still arrive intact.
func TestLargeSendAllocation(t *testing.T) {
	e, ss := newSinkEnv(t)
	body, att := largeSendBody(t, 8<<20)
	for i, hdr := range [][]string{nil, {"Idempotency-Key", "large-send-1"}} {
		var rec *httptest.ResponseRecorder
		got := allocatedBy(func() { rec = postRaw(e, body, hdr...) })
		if rec.Code != 200 {
			t.Fatalf("send %d: %d %.300s", i, rec.Code, rec.Body)
		}
		ratio := float64(got) / float64(len(body))
		t.Logf("send %d (headers %v): request %d bytes, allocated %d bytes (%.2f× the request)", i, hdr, len(body), got, ratio)
		if ratio > 3 {
			t.Errorf("send %d allocated %.2f× its request size, want at most 3×", i, ratio)
		}
		pm := parseMail(t, ss.last)
		if p := pm.part(t, "application/pdf"); !bytes.Equal(p.body, att) || p.filename != "report.pdf" {
			t.Fatalf("send %d: attachment arrived as %d bytes named %q, want the %d sent", i, len(p.body), p.filename, len(att))
		}
	}
}

// BenchmarkSendLarge is one /emails/send of a 17 MiB attachment (a
// 23.8 MB request); B/op is what one send allocates, and req-multiple is
// that over the request size.
func BenchmarkSendLarge(b *testing.B) {
	e, _ := newSinkEnv(b)
	body, _ := largeSendBody(b, 17<<20)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	var total uint64
	for i := 0; i < b.N; i++ {
		got := allocatedBy(func() {
			if rec := postRaw(e, body); rec.Code != 200 {
				b.Fatalf("send: %d %.300s", rec.Code, rec.Body)
			}
		})
		total += got
	}
	b.ReportMetric(float64(total)/float64(b.N)/float64(len(body)), "req-multiple")
}

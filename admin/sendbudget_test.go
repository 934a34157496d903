package admin

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestSendBudgetRefusesPastBound (issue 12, item 10): while one send holds
// its body mid-read, a second whose bytes would pass the bound gets 503
// with Retry-After, before its body is read; once the first is done the
// bytes are free again. Both Content-Length and chunked bodies count.
func TestSendBudgetRefusesPastBound(t *testing.T) {
	e, _ := newSendEnv(t, func(o *Options) { o.Sending.MaxBytesInFlight = 4000 })
	body, _ := json.Marshal(validSend())
	post := func(r io.Reader, length int64) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/api/v1/emails/send", r)
		req.ContentLength = length
		req.Header.Set("Authorization", "Bearer "+testSendKey)
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, req)
		return rec
	}
	for _, chunked := range []bool{false, true} {
		name := "content-length"
		length := int64(3000)
		if chunked {
			name, length = "chunked", -1
		}
		// The first send: 3000 bytes announced, its first part sent, the
		// rest held back until the second one has been answered.
		pr, pw := io.Pipe()
		first := make(chan *httptest.ResponseRecorder)
		go func() { first <- post(pr, length) }()
		pad := append(bytes.Repeat([]byte(" "), 3000-len(body)), body...)
		pw.Write(pad[:2500])
		deadline := time.Now().Add(10 * time.Second)
		for e.srv.sending.InFlight() < 2500 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the first send never reserved its bytes", name)
			}
			time.Sleep(time.Millisecond)
		}
		// 2000 more would pass 4000: refused with 503 and Retry-After,
		// framed either way.
		for _, l := range []int64{2000, -1} {
			rec := post(bytes.NewReader(bytes.Repeat([]byte(" "), 2000)), l)
			if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" ||
				!bytes.Contains(rec.Body.Bytes(), []byte(`"service_unavailable"`)) {
				t.Fatalf("%s: second send (length %d): %d %v %s", name, l, rec.Code, rec.Header(), rec.Body)
			}
		}
		pw.Write(pad[2500:])
		pw.Close()
		if rec := <-first; rec.Code != http.StatusOK {
			t.Fatalf("%s: first send: %d %s", name, rec.Code, rec.Body)
		}
		if n := e.srv.sending.InFlight(); n != 0 {
			t.Fatalf("%s: %d bytes still reserved after the send", name, n)
		}
		// Alone, a send larger than the bound still goes through.
		big := append(bytes.Repeat([]byte(" "), 5000), body...)
		if rec := post(bytes.NewReader(big), int64(len(big))); rec.Code != http.StatusOK {
			t.Fatalf("%s: a lone send over the bound: %d %s", name, rec.Code, rec.Body)
		}
	}
}

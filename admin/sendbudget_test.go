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
	e, _ := newSendEnv(t, func(o *Options) { o.MaxSendBytesInFlight = 4000 })
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
		for e.srv.sendBytes.inFlight() < 2500 {
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
		if n := e.srv.sendBytes.inFlight(); n != 0 {
			t.Fatalf("%s: %d bytes still reserved after the send", name, n)
		}
		// Alone, a send larger than the bound still goes through.
		big := append(bytes.Repeat([]byte(" "), 5000), body...)
		if rec := post(bytes.NewReader(big), int64(len(big))); rec.Code != http.StatusOK {
			t.Fatalf("%s: a lone send over the bound: %d %s", name, rec.Code, rec.Body)
		}
	}
}

// TestSendBudgetTeamShare: while one of its sends is in flight, a team's
// sends together hold at most half the bound, so one tenant cannot take
// the whole budget; another team still gets the rest, and a team's lone
// send may pass half (the size limit, not the share, bounds one send).
func TestSendBudgetTeamShare(t *testing.T) {
	b := &sendBudget{limit: 1000}
	if !b.take("team_a", 600, 0) {
		t.Fatal("a lone send of 600 of 1000 refused")
	}
	if b.take("team_a", 100, 0) {
		t.Fatal("team_a's second send taken past half the bound")
	}
	if !b.take("team_a", 50, 600) {
		t.Fatal("team_a's first send could not grow within the bound")
	}
	if !b.take("team_b", 300, 0) {
		t.Fatal("team_b's send refused with 350 of 1000 free")
	}
	b.give("team_a", 650)
	if !b.take("team_a", 200, 0) || b.take("team_a", 400, 0) {
		t.Fatalf("after the give back: %d in flight", b.inFlight())
	}
	b.give("team_a", 200)
	b.give("team_b", 300)
	if n := b.inFlight(); n != 0 || len(b.teams) != 0 {
		t.Fatalf("%d bytes, %d teams still held", n, len(b.teams))
	}
}

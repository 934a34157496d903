package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
)

// getFrom makes GET path with bearer from local address from; the answer
// is checked against the OpenAPI document when check is set (a wrong
// credential is a deliberately invalid request: only its answer is).
func getFrom(t *testing.T, d *proc, from, path, bearer string, check bool) (int, string, map[string]any) {
	client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}}
	req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://"+d.httpAddr+path, nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	res, err := client.Do(req)
	if err != nil {
		t.Error(err)
		return 0, "", nil
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if check {
		checkAPI(t, req, nil, res, raw, true)
	}
	var body map[string]any
	json.Unmarshal(raw, &body)
	return res.StatusCode, res.Header.Get("Retry-After"), body
}

// guessInParallel sends n wrong bearer tokens for path at once from one
// address and checks that at most limit were checked (401) and the rest
// refused unchecked with 429 rate_limit_exceeded, Retry-After, in the
// error envelope.
func guessInParallel(t *testing.T, d *proc, from, path string, n, limit int, guess func(i int) string) {
	t.Helper()
	status := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range status {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			code, retry, body := getFrom(t, d, from, path, guess(i), true)
			status[i] = code
			if code != 429 {
				return
			}
			e, _ := body["error"].(map[string]any)
			if s, err := strconv.Atoi(retry); err != nil || s < 1 || s > 60 || e["code"] != "rate_limit_exceeded" || e["retryable"] != true {
				t.Errorf("%s: 429 with Retry-After %q, body %v: want 1 to 60 s and rate_limit_exceeded, retryable", path, retry, body)
			}
		}()
	}
	close(start)
	wg.Wait()
	count := map[int]int{}
	for _, s := range status {
		count[s]++
	}
	if count[401] > limit || count[401]+count[429] != n {
		t.Fatalf("%d parallel wrong tokens for %s: statuses %v; want at most %d answered 401 and the rest 429", n, path, count, limit)
	}
}

// TestOperatorAndRootKeyGuessesLimited: wrong operator tokens and wrong
// root keys count against the per-address failed-authentication limit
// shared with SMTP AUTH (they were never limited): 60 in parallel from one
// address against auth_fail_limit = 20 get at most 20 answers 401, the
// rest 429. The backup, behind the same operator check, is refused to that
// address too; another address goes on working with the right secret.
func TestOperatorAndRootKeyGuessesLimited(t *testing.T) {
	const n, limit = 60, 20
	const op = "operator-token-0123456789"
	d := newDaemon(t, map[string]string{
		"":     fmt.Sprintf("operator_token = %q\n", op),
		"smtp": fmt.Sprintf("auth_fail_limit = %d", limit),
	})

	guessInParallel(t, d, "127.0.0.5", "/api/v1/operator/teams", n, limit,
		func(i int) string { return fmt.Sprintf("operator-guess-%03d", i) })
	if code, _, _ := getFrom(t, d, "127.0.0.5", "/api/v1/operator/backup", "operator-guess-x", false); code != 429 {
		t.Fatalf("backup from the guessing address: %d, want 429", code)
	}
	if code, _, body := getFrom(t, d, "127.0.0.2", "/api/v1/operator/teams", op, true); code != 200 {
		t.Fatalf("operator from another address: %d %v", code, body)
	}

	guessInParallel(t, d, "127.0.0.6", "/api/v1/providers", n, limit,
		func(i int) string { return fmt.Sprintf("smx_root_guess%03dxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", i) })
	if code, _, body := getFrom(t, d, "127.0.0.2", "/api/v1/providers", testRootKey, true); code != 200 {
		t.Fatalf("root key from another address: %d %v", code, body)
	}
}

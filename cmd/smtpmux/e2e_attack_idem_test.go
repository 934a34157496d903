package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestAttackEchoedFieldNotKept (hostile tenant): an unknown JSON member
// is named in the 400 (error answers are no longer kept by the
// Idempotency-Key layer, but the answer itself must stay small). A send whose one member's name is megabytes long must
// not be echoed back whole: the answer (and the record kept of it, in
// bbolt or in etcd, where a record past etcd's request limit would never
// be stored and would pin the answer in memory for its retries) would be
// twice the upload, for one request.
func TestAttackEchoedFieldNotKept(t *testing.T) {
	d := newDaemon(t, nil)
	_, key := d.setupRelayExisting()
	name := strings.Repeat("A", 2<<20)
	for i, body := range []string{
		`{"` + name + `":1}`, // an unknown member
		`{"from":"a@example.com","to":"b@example.net","subject":"s","text_body":"t","custom_headers":{"X-` + name + `":"v"}}`,
		`{"from":"a@example.com","to":"b@example.net","subject":"s","text_body":"t","custom_headers":{"X-` + name + `":1}}`,
		`{"from":"a@example.com","to":"b@example.net","subject":"s","text_body":"t","custom_headers":{"X-` + name + `":null}}`,
	} {
		testEchoKept(t, d, key, fmt.Sprint("echo-", i), body)
	}
}

func testEchoKept(t *testing.T, d *proc, key, idem, body string) {
	t.Helper()
	post := func() (int, http.Header, []byte) {
		req, _ := http.NewRequest("POST", "http://"+d.httpAddr+"/api/v1/emails/send", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", idem)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b
	}
	code, _, first := post()
	if code != 400 && code != 422 {
		t.Fatalf("%s: send with a 2 MiB member name: %d %.300s", idem, code, first)
	}
	if len(first) > 4096 {
		t.Fatalf("%s: the answer is %d bytes: the member's name is echoed whole", idem, len(first))
	}
	// An error answer is not kept at all (it did nothing): the retry
	// runs again and is refused the same way.
	code2, h, again := post()
	if code2 != code || h.Get("Idempotent-Replayed") != "" || len(again) > 4096 {
		t.Fatalf("%s: retry: %d replayed=%q %.300s", idem, code2, h.Get("Idempotent-Replayed"), again)
	}
}

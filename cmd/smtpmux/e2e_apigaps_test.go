package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// apiHeaders is a Management API call with extra request headers that
// returns the status, the response headers and the raw body.
func (d *proc) apiHeaders(key, method, path string, body any, hdr map[string]string) (int, http.Header, []byte) {
	d.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+d.httpAddr+"/api/v1"+path, r)
	req.Header.Set("Authorization", "Bearer "+key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw
}

// TestConditionalGetNotModified: a single-resource GET's weak ETag sent
// back in If-None-Match answers 304 with no body and the ETag, for the
// strong form of the tag and in a list too; after a change the old tag
// gets the 200 with the new ETag; a list endpoint (no ETag) ignores it.
func TestConditionalGetNotModified(t *testing.T) {
	t.Parallel()
	d := newDaemon(t, nil)
	id := d.must(201, "POST", "/delivery-groups", map[string]any{"name": "cond"})["id"].(string)
	path := "/delivery-groups/" + id

	code, h, _ := d.apiHeaders(testRootKey, "GET", path, nil, nil)
	etag := h.Get("ETag")
	if code != 200 || etag == "" {
		t.Fatalf("GET %s: %d, ETag %q", path, code, etag)
	}
	strong := etag[len("W/"):]
	for _, inm := range []string{etag, strong, `"nope", ` + etag, "*"} {
		code, h, body := d.apiHeaders(testRootKey, "GET", path, nil, map[string]string{"If-None-Match": inm})
		if code != http.StatusNotModified || len(body) != 0 || h.Get("ETag") != etag {
			t.Fatalf("If-None-Match %s: %d, ETag %q, body %q; want 304, %s, no body", inm, code, h.Get("ETag"), body, etag)
		}
	}
	code, _, body := d.apiHeaders(testRootKey, "GET", path, nil, map[string]string{"If-None-Match": `W/"999999"`})
	if code != 200 || len(body) == 0 {
		t.Fatalf("another tag: %d %q, want 200 with the group", code, body)
	}

	d.must(200, "PATCH", path, map[string]any{"name": "cond-renamed"})
	code, h, body = d.apiHeaders(testRootKey, "GET", path, nil, map[string]string{"If-None-Match": etag})
	if code != 200 || h.Get("ETag") == etag || !bytes.Contains(body, []byte("cond-renamed")) {
		t.Fatalf("after a change: %d, ETag %q (old %q), body %q; want 200 with the new version", code, h.Get("ETag"), etag, body)
	}

	if code, _, body := d.apiHeaders(testRootKey, "GET", "/delivery-groups", nil, map[string]string{"If-None-Match": "*"}); code != 200 || len(body) == 0 {
		t.Fatalf("list with If-None-Match: %d %q, want 200", code, body)
	}
}

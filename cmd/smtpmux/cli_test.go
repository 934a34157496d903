package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeAPI is an httptest Management API: handlers by "METHOD /path"
// (below /api/v1) and a record of what the CLI sent.
type fakeAPI struct {
	t    *testing.T
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []fakeReq
}

type fakeReq struct {
	method, path, auth string
	escaped            string // the path as sent, before decoding
	query              map[string][]string
	body               map[string]any
}

const fakeKey = "smx_root_unitTestKey_DoNotPrint"

func newFakeAPI(t *testing.T, routes map[string]http.HandlerFunc) *fakeAPI {
	f := &fakeAPI{t: t}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		b, _ := io.ReadAll(r.Body)
		if len(b) > 0 {
			if err := json.Unmarshal(b, &body); err != nil {
				t.Errorf("CLI sent non-JSON body %q", b)
			}
		}
		path := strings.TrimPrefix(r.URL.Path, "/api/v1")
		f.mu.Lock()
		f.reqs = append(f.reqs, fakeReq{r.Method, path, r.Header.Get("Authorization"), r.URL.EscapedPath(), r.URL.Query(), body})
		f.mu.Unlock()
		if h := routes[r.Method+" "+path]; h != nil {
			h(w, r)
			return
		}
		writeFake(w, 404, `{"ok":false,"error":{"code":"not_found","message":"no such endpoint"},"meta":{"request_id":"req_1"}}`)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func writeFake(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// okData answers {"ok":true,"data":data}.
func okData(status int, data string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeFake(w, status, `{"ok":true,"data":`+data+`,"meta":{"request_id":"req_1"}}`)
	}
}

func (f *fakeAPI) requests() []fakeReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeReq(nil), f.reqs...)
}

// cli runs an admin command against the fake with the test key.
func (f *fakeAPI) cli(stdin string, args ...string) (int, string, string) {
	return runCLI(stdin, append(args, "--url", f.srv.URL, "--key", fakeKey)...)
}

func runCLI(stdin string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := cliMain(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

const twoProviders = `[
 {"id":"dprov_a","name":"Main","type":"smtp","status":"active","smtp_host":"smtp.example.com","smtp_port":587,
  "group_id":null,"percentage":70,"health":{"state":"closed"}},
 {"id":"dprov_b","name":"Evil\u001b[31mname","type":"managed_ses","status":"inactive","smtp_host":null,"smtp_port":null,
  "group_id":"dgrp_x","percentage":null,"health":{"state":"open"}}]`

func TestCLIProvidersListTable(t *testing.T) {
	f := newFakeAPI(t, map[string]http.HandlerFunc{"GET /providers": okData(200, twoProviders)})
	code, out, errOut := f.cli("", "providers", "list", "--status", "active")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "HEALTH") {
		t.Fatalf("table:\n%s", out)
	}
	if f := strings.Fields(lines[1]); strings.Join(f, " ") != "dprov_a Main smtp active smtp.example.com:587 - 70 closed" {
		t.Fatalf("row 1: %q", lines[1])
	}
	// Nulls render as "-"; a control character cannot reach the terminal.
	if strings.Contains(out, "\x1b") || !strings.Contains(lines[2], "Evil [31mname") || !strings.Contains(lines[2], "dgrp_x") {
		t.Fatalf("row 2: %q", lines[2])
	}
	r := f.requests()[0]
	if r.auth != "Bearer "+fakeKey || r.query["status"][0] != "active" || r.query["limit"][0] != "100" {
		t.Fatalf("request %+v", r)
	}
	if strings.Contains(out+errOut, fakeKey) {
		t.Fatal("the key was printed")
	}
}

// pagedKeys serves n keys, page by page, as the API does.
func pagedKeys(n int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		start := 0
		if c := r.URL.Query().Get("cursor"); c != "" {
			b, _ := base64.RawURLEncoding.DecodeString(c)
			start, _ = strconv.Atoi(strings.TrimPrefix(string(b), "key_"))
			start++
		}
		end := min(start+limit, n)
		var items []string
		for i := start; i < end; i++ {
			items = append(items, fmt.Sprintf(`{"id":"key_%d","name":"k%d","type":"sending","status":"active","send_scope":{"type":"all"}}`, i, i))
		}
		pag := `{"has_more":false,"next_cursor":null}`
		if end < n {
			pag = fmt.Sprintf(`{"has_more":true,"next_cursor":%q}`, base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("key_%d", end-1))))
		}
		writeFake(w, 200, `{"ok":true,"data":[`+strings.Join(items, ",")+`],"pagination":`+pag+`}`)
	}
}

func TestCLIPagination(t *testing.T) {
	f := newFakeAPI(t, map[string]http.HandlerFunc{"GET /api-keys": pagedKeys(250)})
	code, out, errOut := f.cli("", "keys", "list")
	if code != 0 || strings.Count(out, "\n") != 251 || !strings.Contains(out, "key_249") {
		t.Fatalf("exit %d, %d lines: %s", code, strings.Count(out, "\n"), errOut)
	}
	if n := len(f.requests()); n != 3 {
		t.Fatalf("%d requests for 250 items, want 3", n)
	}

	code, out, errOut = f.cli("", "keys", "list", "--limit", "150", "--json")
	var items []map[string]any
	if err := json.Unmarshal([]byte(out), &items); code != 0 || err != nil || len(items) != 150 || items[149]["id"] != "key_149" {
		t.Fatalf("exit %d, %d items, %v: %s", code, len(items), err, errOut)
	}
	reqs := f.requests()[3:]
	if len(reqs) != 2 || reqs[1].query["limit"][0] != "50" || reqs[1].query["cursor"][0] == "" {
		t.Fatalf("limited requests %+v", reqs)
	}
	if !strings.Contains(errOut, "more exist") {
		t.Fatalf("no note that more items exist: %q", errOut)
	}
	// Items within the limit: no note.
	if _, _, errOut = f.cli("", "keys", "list", "--limit", "250"); errOut != "" {
		t.Fatalf("stderr %q", errOut)
	}
}

func TestCLIExitCodes(t *testing.T) {
	f := newFakeAPI(t, map[string]http.HandlerFunc{
		"GET /providers/dprov_401": func(w http.ResponseWriter, r *http.Request) {
			writeFake(w, 401, `{"ok":false,"error":{"code":"authentication_required","message":"invalid API key"}}`)
		},
		"GET /providers/dprov_403": func(w http.ResponseWriter, r *http.Request) {
			writeFake(w, 403, `{"ok":false,"error":{"code":"insufficient_permissions","message":"lacks provider.read"}}`)
		},
		"POST /providers": func(w http.ResponseWriter, r *http.Request) {
			writeFake(w, 422, `{"ok":false,"error":{"code":"validation_error","message":"invalid fields: smtp_port, name",
				"errors":[{"field":"smtp_port","code":"invalid","message":"smtp_port must be 1-65535"},
				          {"field":"name","code":"too_long","message":"name is too long"}]},"meta":{"request_id":"req_422"}}`)
		},
		"GET /providers/dprov_500": func(w http.ResponseWriter, r *http.Request) {
			writeFake(w, 500, `{"ok":false,"error":{"code":"internal_error","message":"internal error"}}`)
		},
		"GET /providers/dprov_html": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(502)
			io.WriteString(w, "<html>Bad Gateway</html>")
		},
	})
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr []string
	}{
		{"401", []string{"providers", "get", "dprov_401"}, exitAuth, []string{"error: authentication_required: invalid API key"}},
		{"403", []string{"providers", "get", "dprov_403"}, exitAuth, []string{"insufficient_permissions"}},
		{"422", []string{"providers", "create", "--name", "x", "--host", "h", "--port", "25"}, exitAPI,
			[]string{"error: validation_error: invalid fields", "smtp_port: smtp_port must be 1-65535 (invalid)", "name: name is too long", "req_422"}},
		{"500", []string{"providers", "get", "dprov_500"}, exitAPI, []string{"internal_error"}},
		{"404", []string{"groups", "get", "dgrp_none"}, exitAPI, []string{"not_found"}},
		{"non-JSON", []string{"providers", "get", "dprov_html"}, exitNetwork, []string{"not a Management API answer (HTTP 502)"}},
	} {
		code, out, errOut := f.cli("", tc.args...)
		if code != tc.code || out != "" {
			t.Errorf("%s: exit %d (want %d), stdout %q, stderr %q", tc.name, code, tc.code, out, errOut)
		}
		for _, s := range tc.stderr {
			if !strings.Contains(errOut, s) {
				t.Errorf("%s: stderr %q lacks %q", tc.name, errOut, s)
			}
		}
		if strings.Contains(errOut, fakeKey) {
			t.Errorf("%s: the key was printed", tc.name)
		}
	}

	code, _, errOut := runCLI("", "limits", "--url", deadURL, "--key", fakeKey)
	if code != exitNetwork || !strings.Contains(errOut, "cannot reach the server") || strings.Contains(errOut, fakeKey) {
		t.Fatalf("connection refused: exit %d, %q", code, errOut)
	}
	t.Setenv("SMTPMUX_API_KEY", "")
	code, _, errOut = runCLI("", "limits", "--url", f.srv.URL)
	if code != exitAuth || !strings.Contains(errOut, "SMTPMUX_API_KEY") {
		t.Fatalf("no key: exit %d, %q", code, errOut)
	}
}

func TestCLIUsageErrors(t *testing.T) {
	f := newFakeAPI(t, nil)
	for _, args := range [][]string{
		{"providers"},
		{"providers", "frobnicate"},
		{"providers", "get"},
		{"providers", "get", "a", "b"},
		{"providers", "list", "--bogus"},
		{"providers", "create", "--host", "h", "--port", "25"},
		{"providers", "create", "--name", "n", "--host", "h"},
		{"providers", "create", "--name", "n", "--host", "h", "--port", "x"},
		{"keys", "create", "--name", "n", "--scope", "providers:"},
		{"keys", "list", "--limit", "10001"},
		{"mailboxes", "passwords", "revoke", "mbx_1"},
		{"mailboxes", "passwords", "create", "mbx_1"},
		{"limits", "extra"},
		{"providers", "create", "--name", "n", "--host", "h", "--port", "25", "--password-stdin"},
	} {
		if code, out, errOut := f.cli("", args...); code != exitUsage || out != "" || errOut == "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Fatalf("usage errors sent %d requests", n)
	}
	// Asked-for help is not an error; it goes to stdout and names the
	// exit codes.
	code, out, _ := runCLI("", "mailboxes", "help")
	if code != 0 || !strings.Contains(out, "mailboxes passwords create MBX --name N") || !strings.Contains(out, "exit codes") {
		t.Fatalf("help: %d %q", code, out)
	}
	t.Setenv("SMTPMUX_API_KEY", fakeKey)
	if code, _, errOut := runCLI("", "providers", "list", "-h"); code != 0 || strings.Contains(errOut, fakeKey) {
		t.Fatalf("-h: exit %d, stderr %q", code, errOut)
	}
}

func TestCLIJSONPassthrough(t *testing.T) {
	item := `{"id":"dprov_a","zeta":1,"alpha":{"n":12345678901234567890},"name":"Main"}`
	f := newFakeAPI(t, map[string]http.HandlerFunc{"GET /providers/dprov_a": okData(200, item)})
	code, out, _ := f.cli("", "providers", "get", "dprov_a", "--json")
	var want bytes.Buffer
	json.Indent(&want, []byte(item), "", "  ")
	// Member order and the big number survive: the data is passed through.
	if code != 0 || out != want.String()+"\n" {
		t.Fatalf("exit %d:\n%s\nwant\n%s", code, out, want.String())
	}
}

func TestCLICreateRequests(t *testing.T) {
	created := `{"id":"dprov_n","name":"n","type":"smtp","status":"active","has_smtp_password":true}`
	f := newFakeAPI(t, map[string]http.HandlerFunc{
		"POST /providers":                 okData(201, created),
		"POST /api-keys":                  okData(201, `{"id":"key_1","name":"ci","type":"sending","prefix":"smx_live_abc","status":"active","send_scope":{"type":"providers","provider_public_ids":["dprov_a","dprov_b"]},"key":"smx_live_SECRET"}`),
		"POST /mailboxes/mbx_1/passwords": okData(201, `{"id":"mpw_1","mailbox_id":"mbx_1","name":"app","prefix":"smx_mbx_abc","status":"active","password":"smx_mbx_PWSECRET"}`),
	})
	code, out, errOut := f.cli("s3cret pw\n", "providers", "create", "--name", "n", "--host", "h.example", "--port", "587",
		"--username", "u", "--password-stdin", "--percentage", "0", "--group", "dgrp_1")
	if code != 0 || !strings.Contains(out, "dprov_n") || strings.Contains(out+errOut, "s3cret") {
		t.Fatalf("exit %d: %q %q", code, out, errOut)
	}
	body := f.requests()[0].body
	if body["smtp_password"] != "s3cret pw" || body["percentage"] != 0.0 || body["smtp_protocol"] != "starttls" ||
		body["smtp_port"] != 587.0 || body["group_id"] != "dgrp_1" || body["type"] != "smtp" {
		t.Fatalf("body %v", body)
	}
	// Unset optional flags are not sent: absent differs from zero.
	f.cli("", "providers", "create", "--name", "n", "--host", "h", "--port", "25")
	if body := f.requests()[1].body; body["percentage"] != nil || body["smtp_password"] != nil || body["group_id"] != nil {
		t.Fatalf("body %v", body)
	}

	code, out, errOut = f.cli("", "keys", "create", "--name", "ci", "--scope", "providers:dprov_a,dprov_b")
	if code != 0 || !strings.Contains(out, "smx_live_SECRET") || !strings.Contains(out, "providers:dprov_a,dprov_b") || !strings.Contains(errOut, "only this once") {
		t.Fatalf("keys create: %d %q %q", code, out, errOut)
	}
	sc, _ := f.requests()[2].body["send_scope"].(map[string]any)
	if f.requests()[2].body["type"] != "sending" || sc["type"] != "providers" || len(sc["provider_public_ids"].([]any)) != 2 {
		t.Fatalf("key body %v", f.requests()[2].body)
	}

	code, out, _ = f.cli("", "mailboxes", "passwords", "create", "mbx_1", "--name", "app")
	if code != 0 || !strings.Contains(out, "smx_mbx_PWSECRET") || f.requests()[3].body["name"] != "app" {
		t.Fatalf("password create: %d %q", code, out)
	}
}

func TestCLIEmailGetAndTest(t *testing.T) {
	email := `{"id":"eml_1","status":"sent","reason":null,"waiting":null,"source":"smtp","from":"a@example.com",
	 "subject":"Hi","size":120,"recipients":[{"email":"u@example.net","status":"sent","code":250,"reply":"250 OK id=9","provider_id":"dprov_a"}],
	 "attempts":[{"number":1,"provider_id":"dprov_a","provider_type":"smtp","started_at":"2026-01-01T00:00:00Z","duration_ms":42,
	  "status":"sent","class":null,"code":250,"reply":"250 OK id=9",
	  "routing":{"scope_type":"all","in_scope":["dprov_a","dprov_b"],"excluded":[{"provider_id":"dprov_b","reason":"inactive"}],
	   "eligible":[{"provider_id":"dprov_a","weight":100}],"draw":37,"total_weight":100,"picked":"dprov_a"}}]}`
	f := newFakeAPI(t, map[string]http.HandlerFunc{
		"GET /emails/eml_1":            okData(200, email),
		"POST /providers/dprov_a/test": okData(200, `{"success":false,"deferred":false,"message":"535 auth failed","latency_ms":5}`),
	})
	code, out, _ := f.cli("", "emails", "get", "eml_1")
	if !regexp.MustCompile(`(?m)^STATUS +sent$`).MatchString(out) {
		t.Errorf("emails get lacks the status line:\n%s", out)
	}
	for _, s := range []string{"RECIPIENTS", "u@example.net", "250 OK id=9", "ATTEMPTS",
		"picked dprov_a (draw 37 of 100, 1 eligible)", "excluded dprov_b: inactive"} {
		if !strings.Contains(out, s) {
			t.Errorf("emails get lacks %q:\n%s", s, out)
		}
	}
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	code, out, errOut := f.cli("", "providers", "test", "dprov_a")
	if code != exitAPI || !strings.Contains(out, "535 auth failed") || !strings.Contains(errOut, "provider test failed") {
		t.Fatalf("failed test: exit %d %q %q", code, out, errOut)
	}
}

func TestCLIEnvironmentAndURL(t *testing.T) {
	f := newFakeAPI(t, map[string]http.HandlerFunc{"GET /providers/limits": okData(200,
		`{"sending_accounts":{"usage":2,"max_allowed":200,"usage_ratio":0.01,"is_at_limit":false,"is_near_limit":false},
		  "shared_amazon_ses":{"usage":50,"max_allowed":50,"usage_ratio":1,"is_at_limit":true,"is_near_limit":true,"resets_at":"2026-01-02T00:00:00Z"}}`)})
	// A URL that already names /api/v1, and a bare host:port, both work.
	t.Setenv("SMTPMUX_URL", f.srv.URL+"/api/v1/")
	t.Setenv("SMTPMUX_API_KEY", fakeKey)
	code, out, errOut := runCLI("", "limits")
	if code != 0 || !strings.Contains(out, "shared_amazon_ses") || !strings.Contains(out, "2026-01-02T00:00:00Z") {
		t.Fatalf("exit %d %q %q", code, out, errOut)
	}
	if r := f.requests()[0]; r.path != "/providers/limits" || r.auth != "Bearer "+fakeKey {
		t.Fatalf("request %+v", r)
	}
	if code, _, errOut := runCLI("", "limits", "--url", strings.TrimPrefix(f.srv.URL, "http://")); code != 0 {
		t.Fatalf("host:port URL: %d %q", code, errOut)
	}
	// IDs are path-escaped: one cannot walk to another endpoint.
	f.cli("", "providers", "get", "../api-keys")
	if r := f.requests()[2]; r.escaped != "/api/v1/providers/..%2Fapi-keys" {
		t.Fatalf("escaped path reached %q", r.escaped)
	}
}

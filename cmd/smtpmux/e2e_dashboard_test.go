package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/smtpmux/smtpmux/internal/testpeer"
	"github.com/smtpmux/smtpmux/relay/oauth/oauthtest"
)

// requireChromium returns Debian's chromium, skipping without it (failing
// under CI=true, like requirePeer).
func requireChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is missing (run ./scripts/install-test-peers.sh)")
	}
	t.Skip("chromium is missing (run ./scripts/install-test-peers.sh)")
	return ""
}

// newBrowser starts one headless chromium for a test. The background
// networking flags matter: without them chromium stalls on a closed
// network trying to reach Google's services.
func newBrowser(t *testing.T, exe string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1200, 900),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true), chromedp.Flag("disable-default-apps", true),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// into runs a and keeps its value in dst, so that steps with values
// chain with the others in one browse call.
func into[T any](dst *T, a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		v, err := a(ctx, t)
		*dst = v
		return chromedp.Void{}, err
	}
}

// axeSource is axe-core's script, installed from npm by
// scripts/install-test-peers.sh (MPL-2.0; only the test reads it, nothing
// of it is committed or served).
func axeSource(t *testing.T) string {
	t.Helper()
	path := os.Getenv("SMTPMUX_AXE_JS")
	if path == "" {
		path = "../../node_modules/axe-core/axe.min.js"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("axe-core is missing (run ./scripts/install-test-peers.sh): %v", err)
		}
		t.Skipf("axe-core is missing (run ./scripts/install-test-peers.sh): %v", err)
	}
	return string(b)
}

// shotDir is where failure screenshots go: next to the test log, in
// cmd/smtpmux/testdata/out (ignored by git).
const shotDir = "testdata/out"

// screenshot saves a full-page PNG of the browser's page to path.
func screenshot(ctx context.Context, path string) error {
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	buf, err := chromedp.Run(c, chromedp.FullScreenshot(100))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, buf, 0o644)
}

// Forms are sent with Submit (the browser's own form submission from the
// button's form), not Click: a click lands at coordinates computed just
// before, which a page still settling can move, and the click is lost.

// browse runs browser actions within a deadline, failing the (sub)test with a
// screenshot of the page when they fail.
func browse(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(c, actions...); err != nil {
		name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + ".png"
		path := filepath.Join(shotDir, name)
		if serr := screenshot(ctx, path); serr != nil {
			t.Logf("screenshot failed: %v", serr)
		} else {
			abs, _ := filepath.Abs(path)
			t.Logf("screenshot of the page: %s", abs)
		}
		t.Fatal(err)
	}
}

// TestDashboardInBrowser drives the dashboard of the real daemon in
// headless chromium: one browser and one daemon for every step, steps in
// order (each builds on the one before).
func TestDashboardInBrowser(t *testing.T) {
	exe := requireChromium(t)
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, nil)
	ctx := newBrowser(t, exe)
	var dialogs atomic.Int32
	chromedp.Listen(ctx, func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			dialogs.Add(1)
		}
	})
	base := "http://" + d.httpAddr
	var providerID, sendingKey, messageID string
	shots := os.Getenv("SMTPMUX_SCREENSHOTS") // set to docs/img to refresh the README's screenshots

	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("sign in", func(t *testing.T) {
		var h1, loc string
		browse(t, ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`#key`)),
			chromedp.SendKeys(chromedp.CSS(`#key`), testRootKey), chromedp.Submit(chromedp.CSS(`#key`)),
			chromedp.WaitVisible(chromedp.CSS(`.limits`)), into(&h1, chromedp.Text(chromedp.CSS(`h1`))), into(&loc, chromedp.Location()))
		if h1 != "Sending accounts" || loc != base+"/accounts" {
			t.Fatalf("after sign-in: %q at %s", h1, loc)
		}
	})

	step("add a Custom SMTP account and test it", func(t *testing.T) {
		var loc, result string
		browse(t, ctx, chromedp.Navigate(base+"/accounts/new"), chromedp.Click(chromedp.CSS(`#pick-smtp`)),
			chromedp.WaitVisible(chromedp.CSS(`#smtp_host`)),
			chromedp.SendKeys(chromedp.CSS(`#name`), "sink"),
			chromedp.SendKeys(chromedp.CSS(`#smtp_host`), up.Host()),
			chromedp.SetValue(chromedp.CSS(`#smtp_port`), strconv.Itoa(up.Port())),
			chromedp.SetValue(chromedp.CSS(`#smtp_protocol`), "none"),
			chromedp.Submit(chromedp.CSS(`form.form button.primary`)),
			chromedp.WaitVisible(chromedp.CSS(`#test-button`)), into(&loc, chromedp.Location()),
			chromedp.Submit(chromedp.CSS(`#test-button`)),
			chromedp.WaitVisible(chromedp.CSS(`#test-result`)), into(&result, chromedp.Text(chromedp.CSS(`#test-result`))))
		providerID = strings.TrimPrefix(loc, base+"/accounts/")
		if !strings.HasPrefix(providerID, "dprov_") || !strings.Contains(result, "Connection OK") {
			t.Fatalf("provider %q, test result %q", providerID, result)
		}
	})

	step("test connection fails against a closed port", func(t *testing.T) {
		closed := freeAddr(t) // free: nobody listens there
		_, port, _ := strings.Cut(closed, ":")
		var result, loc string
		browse(t, ctx, chromedp.Navigate(base+"/accounts/new?type=smtp"), chromedp.WaitVisible(chromedp.CSS(`#smtp_host`)),
			chromedp.SendKeys(chromedp.CSS(`#name`), "nobody home"),
			chromedp.SendKeys(chromedp.CSS(`#smtp_host`), "127.0.0.1"),
			chromedp.SetValue(chromedp.CSS(`#smtp_port`), port),
			chromedp.SetValue(chromedp.CSS(`#smtp_protocol`), "none"),
			chromedp.Submit(chromedp.CSS(`form.form button.primary`)),
			chromedp.WaitVisible(chromedp.CSS(`#test-button`)), into(&loc, chromedp.Location()),
			chromedp.Submit(chromedp.CSS(`#test-button`)),
			chromedp.WaitVisible(chromedp.CSS(`#test-result`)), into(&result, chromedp.Text(chromedp.CSS(`#test-result`))))
		if !strings.Contains(result, "Connection failed") {
			t.Fatalf("test result %q", result)
		}
		// Delete it, through the confirmation page.
		var flash string
		browse(t, ctx, chromedp.Navigate(loc+"/delete"), chromedp.Submit(chromedp.CSS(`#confirm-delete`)),
			chromedp.WaitVisible(chromedp.CSS(`.flash`)), into(&flash, chromedp.Text(chromedp.CSS(`.flash`))))
		if flash != "Account deleted." {
			t.Fatalf("after delete: %q", flash)
		}
	})

	step("deactivate the managed account", func(t *testing.T) {
		var flash string
		browse(t, ctx, chromedp.Navigate(base+"/accounts"),
			chromedp.Submit(chromedp.CSS(`section.managed form[action$="/deactivate"] button`)),
			chromedp.WaitVisible(chromedp.CSS(`.flash`)), into(&flash, chromedp.Text(chromedp.CSS(`.flash`))))
		if flash != "Account deactivated." {
			t.Fatalf("flash %q", flash)
		}
	})

	// The per-minute quota's bar counts the message this step sends. A
	// minute boundary between reading the bar and sending resets the
	// window, so the step tries again in the next minute then.
	step("set a per-minute quota and see the bar move", func(t *testing.T) {
		acct := base + "/accounts/" + providerID
		browse(t, ctx, chromedp.Navigate(acct), chromedp.Click(chromedp.CSS(`details.advanced summary`)),
			chromedp.SetValue(chromedp.CSS(`#quota_per_minute`), "5"),
			chromedp.Submit(chromedp.CSS(`#save`)), chromedp.WaitVisible(chromedp.CSS(`.quota-num`)))
		code, resp := d.api("POST", "/api-keys", map[string]any{"name": "browser", "type": "sending"})
		if code != 201 {
			t.Fatalf("sending key: %d %v", code, resp)
		}
		sendingKey = data(resp)["key"].(string)
		bar := func() int {
			var s string
			browse(t, ctx, chromedp.Navigate(acct), into(&s, chromedp.Text(chromedp.CSS(`.quota-num`))))
			used, _, _ := strings.Cut(s, " / ")
			n, err := strconv.Atoi(used)
			if err != nil || !strings.HasSuffix(s, "/ 5") {
				t.Fatalf("quota bar %q", s)
			}
			return n
		}
		for try := 0; ; try++ {
			minute := time.Now().Truncate(time.Minute)
			before := bar()
			messageID = sendFault(t, d, sendingKey, "app@example.com", []string{"user@example.net"}, faultMsg(fmt.Sprint("browser-", try)))
			if e := d.waitEmail(messageID); e["status"] != "sent" {
				t.Fatalf("message: %v", e)
			}
			after := bar()
			if time.Now().Truncate(time.Minute).Equal(minute) {
				if after != before+1 {
					t.Fatalf("per-minute bar went from %d to %d for one message", before, after)
				}
				break
			}
			if try == 2 {
				t.Fatal("three minute boundaries in a row")
			}
		}
		if shots != "" {
			browse(t, ctx, chromedp.Navigate(base+"/accounts"), chromedp.WaitVisible(chromedp.CSS(`.providers`)))
			if err := screenshot(ctx, filepath.Join(shots, "dashboard-accounts.png")); err != nil {
				t.Fatal(err)
			}
		}
	})

	step("the message in Logs with its routing explanation", func(t *testing.T) {
		var status, picked, reply string
		browse(t, ctx, chromedp.Navigate(base+"/logs?status=sent"),
			chromedp.Click(chromedp.CSS(`a[href="/messages/`+messageID+`"]`)),
			chromedp.WaitVisible(chromedp.CSS(`.routing`)),
			into(&status, chromedp.Text(chromedp.CSS(`.head .badge`))),
			into(&picked, chromedp.Text(chromedp.CSS(`.attempt:last-child .picked-name`))),
			into(&reply, chromedp.Text(chromedp.CSS(`.attempt:last-child .reply`))))
		if status != "sent" || picked != "sink" || !strings.Contains(reply, "250") {
			t.Fatalf("message page: status %q, picked %q, reply %q", status, picked, reply)
		}
		var excluded string
		browse(t, ctx, into(&excluded, chromedp.Text(chromedp.CSS(`.attempt:last-child .excluded`))))
		if !strings.Contains(excluded, "deactivated") {
			t.Fatalf("the managed account's exclusion is not explained: %q", excluded)
		}
		if shots != "" {
			if err := screenshot(ctx, filepath.Join(shots, "dashboard-routing.png")); err != nil {
				t.Fatal(err)
			}
		}
	})

	step("deactivate and activate", func(t *testing.T) {
		acct := base + "/accounts/" + providerID
		var s1, s2 string
		browse(t, ctx, chromedp.Navigate(acct), chromedp.Submit(chromedp.CSS(`form[action$="/deactivate"] button`)),
			chromedp.WaitVisible(chromedp.CSS(`form[action$="/activate"] button`)), into(&s1, chromedp.Text(chromedp.CSS(`#status`))),
			chromedp.Submit(chromedp.CSS(`form[action$="/activate"] button`)),
			chromedp.WaitVisible(chromedp.CSS(`form[action$="/deactivate"] button`)), into(&s2, chromedp.Text(chromedp.CSS(`#status`))))
		if s1 != "inactive" || s2 != "active" {
			t.Fatalf("status after deactivate %q, after activate %q", s1, s2)
		}
	})

	step("a provider named like a script is text", func(t *testing.T) {
		name := `<script>alert(1)</script>`
		code, resp := d.api("POST", "/providers", map[string]any{"name": name, "type": "smtp", "smtp_host": up.Host(),
			"smtp_port": up.Port(), "smtp_protocol": "none"})
		if code != 201 {
			t.Fatalf("create: %d %v", code, resp)
		}
		id := data(resp)["id"].(string)
		var shown string
		browse(t, ctx, chromedp.Navigate(base+"/accounts"), into(&shown, chromedp.TextContent(chromedp.CSS(`#p-`+id+` .pname`))),
			chromedp.Navigate(base+"/accounts/"+id), chromedp.WaitVisible(chromedp.CSS(`#status`)))
		if shown != name || dialogs.Load() != 0 {
			t.Fatalf("shown %q, %d dialogs", shown, dialogs.Load())
		}
	})

	step("suppress an address with a hostile reason", func(t *testing.T) {
		reason := `<img src=x onerror=alert(1)>`
		var shown string
		var imgs int
		browse(t, ctx, chromedp.Navigate(base+"/suppressions"), chromedp.WaitVisible(chromedp.CSS(`#sup-email`)),
			chromedp.SendKeys(chromedp.CSS(`#sup-email`), "gone@example.net"), chromedp.SendKeys(chromedp.CSS(`#sup-reason`), reason),
			chromedp.Submit(chromedp.CSS(`#sup-reason`)), chromedp.WaitVisible(chromedp.CSS(`main tbody td:nth-child(4)`)),
			into(&shown, chromedp.TextContent(chromedp.CSS(`main tbody td:nth-child(4)`))),
			into(&imgs, chromedp.Evaluate[int](`document.querySelectorAll("main img").length`)))
		if shown != reason || imgs != 0 || dialogs.Load() != 0 {
			t.Fatalf("reason shown %q, %d images, %d dialogs", shown, imgs, dialogs.Load())
		}
		if code, _ := d.api("GET", "/suppressions/gone@example.net", nil); code != 200 {
			t.Fatalf("not suppressed: %d", code)
		}
	})

	step("a form without its CSRF token is refused", func(t *testing.T) {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar}
		body := func(res *http.Response, err error) (int, string) {
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			return res.StatusCode, string(b)
		}
		token := regexp.MustCompile(`name="csrf" value="([^"]+)"`)
		_, signin := body(c.Get(base + "/signin"))
		tok := token.FindStringSubmatch(signin)[1]
		if code, page := body(c.PostForm(base+"/signin", url.Values{"csrf": {tok}, "key": {testRootKey}})); code != 200 || !strings.Contains(page, "Sending accounts") {
			t.Fatalf("plain sign-in: %d", code)
		}
		code, _ := body(c.PostForm(base+"/accounts/"+providerID+"/deactivate", url.Values{}))
		if code != http.StatusForbidden {
			t.Fatalf("post without token: %d", code)
		}
		if _, resp := d.api("GET", "/providers/"+providerID, nil); data(resp)["status"] != "active" {
			t.Fatalf("a refused form changed the provider: %v", data(resp)["status"])
		}
	})

	step("create a group and see the delete warning", func(t *testing.T) {
		var href chromedp.AttributeResult
		browse(t, ctx, chromedp.Navigate(base+"/groups"), chromedp.SendKeys(chromedp.CSS(`#g-name`), "eu"),
			chromedp.Submit(chromedp.CSS(`#g-name`)), chromedp.WaitVisible(chromedp.CSS(`a.danger[href$="/delete"]`)),
			into(&href, chromedp.AttributeValue(chromedp.CSS(`a.danger[href$="/delete"]`), "href")))
		loc := href.Value
		gid := strings.TrimSuffix(strings.TrimPrefix(loc, "/groups/"), "/delete")
		if code, resp := d.api("POST", "/api-keys", map[string]any{"name": "eu-only", "type": "sending",
			"send_scope": map[string]any{"type": "group", "group_public_ids": []string{gid}}}); code != 201 {
			t.Fatalf("scoped key: %d %v", code, resp)
		}
		var warning string
		browse(t, ctx, chromedp.Navigate(base+loc), into(&warning, chromedp.Text(chromedp.CSS(`#group-warning`))))
		if !strings.Contains(warning, "eu-only") {
			t.Fatalf("warning %q does not name the key", warning)
		}
	})

	step("pages fit a phone's width", func(t *testing.T) {
		t.Cleanup(func() { chromedp.Do(ctx, chromedp.ResetViewport()) })
		browse(t, ctx, chromedp.EmulateViewport(390, 844))
		for _, path := range []string{"/overview", "/accounts", "/accounts/" + providerID, "/accounts/new", "/logs", "/messages/" + messageID, "/groups", "/suppressions"} {
			var fits bool
			browse(t, ctx, chromedp.Navigate(base+path), chromedp.WaitVisible(chromedp.CSS(`main h1`)),
				into(&fits, chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= window.innerWidth`)))
			if !fits {
				t.Errorf("%s scrolls sideways at 390 px", path)
			}
		}
	})

	step("accessibility (axe-core)", func(t *testing.T) {
		axe := axeSource(t)
		// Three pages that between them hold every building block (cards,
		// meters, the forms, tables, the routing SVG); axe takes about 2 s
		// a page on a loaded machine.
		for _, path := range []string{"/accounts", "/accounts/" + providerID, "/messages/" + messageID, "/suppressions"} {
			var violations []string
			browse(t, ctx, chromedp.Navigate(base+path), chromedp.WaitVisible(chromedp.CSS(`main h1`)),
				// DevTools evaluation is not page script: the CSP that keeps
				// page script out does not apply to it.
				chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
					_, err := chromedp.Evaluate[any](axe)(ctx, tg)
					return err
				}),
				into(&violations, chromedp.Evaluate[[]string](`axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa"]}}).then(r => r.violations.map(v => v.id + " (" + v.impact + "): " + v.nodes.map(n => n.target.join(" ")).slice(0, 3).join(", ")))`,
					chromedp.EvalAwaitPromise)))
			for _, v := range violations {
				t.Errorf("%s: %s", path, v)
			}
		}
	})

	step("sign-out ends the session", func(t *testing.T) {
		var loc string
		browse(t, ctx, chromedp.Navigate(base+"/accounts"), chromedp.Submit(chromedp.CSS(`.signout button`)),
			chromedp.WaitVisible(chromedp.CSS(`#key`)),
			chromedp.Navigate(base+"/logs"), chromedp.WaitVisible(chromedp.CSS(`#key`)), into(&loc, chromedp.Location()))
		if !strings.HasPrefix(loc, base+"/signin") {
			t.Fatalf("after sign-out /logs went to %s", loc)
		}
	})

	step("a sending key cannot sign in", func(t *testing.T) {
		var flash string
		browse(t, ctx, chromedp.Navigate(base+"/signin"), chromedp.WaitVisible(chromedp.CSS(`#key`)),
			chromedp.SendKeys(chromedp.CSS(`#key`), sendingKey), chromedp.Submit(chromedp.CSS(`#key`)),
			chromedp.WaitVisible(chromedp.CSS(`.flash-error`)), into(&flash, chromedp.Text(chromedp.CSS(`.flash-error`))))
		if !strings.Contains(flash, "sending keys cannot use the Management API") {
			t.Fatalf("sending key sign-in: %q", flash)
		}
	})
}

// TestOAuthCallbackReturnsToDashboard: a browser that the provider sends
// back to /oauth/callback lands on the dashboard's page of the connected
// account (or, when it failed, on a fixed notice), while API clients keep
// the JSON answer.
func TestOAuthCallbackReturnsToDashboard(t *testing.T) {
	idp := oauthtest.New(t, "google")
	httpAddr := freeAddr(t)
	p := idp.Provider("http://" + httpAddr + "/oauth/callback")
	d := newDaemonAt(t, httpAddr, map[string]string{"": fmt.Sprintf(`
[oauth.google]
client_id = %q
client_secret = %q
redirect_url = %q
auth_url = %q
token_url = %q
userinfo_url = %q
api_base_url = %q
`, p.ClientID, p.ClientSecret, p.RedirectURL, p.AuthURL, p.TokenURL, p.UserInfoURL, p.APIBaseURL)})
	code, resp := d.api("POST", "/providers/oauth/google/start", nil)
	if code != 200 {
		t.Fatalf("start: %d %v", code, resp)
	}
	oc, state, err := idp.Consent(data(resp)["authorization_url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	back := func(q url.Values) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+httpAddr+"/oauth/callback?"+q.Encode(), nil)
		req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8") // as a browser sends it
		res, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode, res.Header.Get("Location")
	}
	code, loc := back(url.Values{"code": {oc}, "state": {state}})
	if code != http.StatusSeeOther || !strings.HasPrefix(loc, "/accounts/dprov_") {
		t.Fatalf("browser callback: %d %q", code, loc)
	}
	if _, resp := d.api("GET", "/providers/"+strings.TrimPrefix(loc, "/accounts/"), nil); data(resp)["type"] != "gmail_api" {
		t.Fatalf("connected provider: %v", resp)
	}
	if code, loc := back(url.Values{"code": {oc}, "state": {state}, "x": {"<script>"}}); code != http.StatusSeeOther || loc != "/accounts/new?connect=failed" {
		t.Fatalf("reused state: %d %q", code, loc)
	}
	if code, _ := d.apiAs("", "GET", "//oauth/callback?code=x&state=reused-or-unknown", nil); code != 422 {
		t.Fatalf("API client: %d, want the JSON 422", code)
	}
}

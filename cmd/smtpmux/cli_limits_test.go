package main

import (
	"net/http"
	"regexp"
	"testing"
)

// TestCLILimitsShowsReservedAndHourly: `smtpmux limits` prints the
// managed account's reserved recipients and its hourly limit on a row of
// its own, the same figures GET /providers/limits reports.
func TestCLILimitsShowsReservedAndHourly(t *testing.T) {
	f := newFakeAPI(t, map[string]http.HandlerFunc{"GET /providers/limits": okData(200,
		`{"sending_accounts":{"usage":2,"max_allowed":200,"usage_ratio":0.01,"is_at_limit":false,"is_near_limit":false},
		  "shared_amazon_ses":{"usage":50,"reserved":48,"max_allowed":50,"usage_ratio":1,"is_at_limit":true,"is_near_limit":true,
		    "resets_at":"2026-01-02T00:00:00Z",
		    "hourly":{"limit":2,"usage":50,"reserved":48,"is_at_limit":true,"resets_at":"2026-01-01T13:00:00Z"}}}`)})
	t.Setenv("SMTPMUX_URL", f.srv.URL)
	t.Setenv("SMTPMUX_API_KEY", fakeKey)
	code, out, errOut := runCLI("", "limits")
	if code != 0 {
		t.Fatalf("exit %d %q", code, errOut)
	}
	for _, re := range []string{`(?m)^LIMIT +USAGE +RESERVED +MAX`, `(?m)^shared_amazon_ses +50 +48 +50 `,
		`(?m)^shared_amazon_ses hourly +50 +48 +2 +- +yes .*2026-01-01T13:00:00Z`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("limits output lacks %s:\n%s", re, out)
		}
	}
}

package dashboard

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestSmoke(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	if p := b.signIn(e.root); p.Code != http.StatusSeeOther {
		t.Fatalf("sign in: %d %s", p.Code, p.Body)
	}
	for _, path := range []string{"/accounts", "/accounts/new", "/accounts/new?type=smtp", "/logs", "/overview", "/groups"} {
		p := b.get(path)
		if p.Code != 200 {
			t.Fatalf("%s: %d %s", path, p.Code, p.Body)
		}
	}
	_ = url.Values{}
	_ = regexp.MustCompile
	_ = strings.Contains
	_ = time.Second
}

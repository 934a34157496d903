package admin

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/smtpmux/smtpmux/admin/openapi"
)

// loadOpenAPI parses and validates the embedded document.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openapi.JSON)
	if err != nil {
		t.Fatalf("openapi.json does not parse: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi.json declares %q; want 3.1", doc.OpenAPI)
	}
	return doc
}

// TestOpenAPICoversRoutes fails when a route is registered without being
// documented, or the document names an operation that is not registered:
// the document is maintained by hand, and this is what keeps it complete.
func TestOpenAPICoversRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	registered := map[string]bool{}
	for _, rt := range (&Server{}).routes() {
		registered[rt.method+" "+rt.path] = true
	}
	for _, m := range (&Server{}).mounts() {
		registered[m.method+" "+m.path] = true
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	diff := func(a, b map[string]bool) []string {
		var out []string
		for k := range a {
			if !b[k] {
				out = append(out, k)
			}
		}
		sort.Strings(out)
		return out
	}
	if missing := diff(registered, documented); len(missing) > 0 {
		t.Errorf("routes registered in routes() but missing from admin/openapi/openapi.json:\n  %s", strings.Join(missing, "\n  "))
	}
	if extra := diff(documented, registered); len(extra) > 0 {
		t.Errorf("operations in admin/openapi/openapi.json that routes() does not register:\n  %s", strings.Join(extra, "\n  "))
	}
}

// TestOpenAPIServed checks that the daemon serves the embedded document
// without credentials, as JSON.
func TestOpenAPIServed(t *testing.T) {
	e := newEnv(t)
	req := httptest.NewRequest("GET", "/api/v1/openapi.json", nil)
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /api/v1/openapi.json: %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if !bytes.Equal(rec.Body.Bytes(), openapi.JSON) {
		t.Errorf("served document differs from the embedded one")
	}
	if _, err := openapi3.NewLoader().LoadFromData(rec.Body.Bytes()); err != nil {
		t.Errorf("served document does not parse: %v", err)
	}
}

package admin

import (
	"testing"
)

// TestResourceSkeleton walks every kind on the shared item skeleton
// (resource.go) through the same rules, so that a kind wired differently
// from the others shows here: GET answers the record with its version as
// ETag; another team's record and a malformed ID are 404 on GET, PATCH
// and DELETE; an empty PATCH keeps the version; a stale If-Match is 409
// and changes nothing; DELETE answers {id, deleted} and the record is
// gone.
func TestResourceSkeleton(t *testing.T) {
	e := newEnv(t)
	_, _, otherRoot := e.provision("other")
	other := []string{"Authorization", "Bearer " + otherRoot}
	for _, tc := range []struct {
		kind  string // collection path under /api/v1
		body  map[string]any
		patch bool // the kind has PATCH …/{id}
	}{
		{"delivery-groups", map[string]any{"name": "Transactional"}, true},
		{"mailboxes", map[string]any{"address": "billing@example.com"}, true},
		{"webhooks", validWebhook("https://hooks.example.com/in"), true},
		{"providers", validSMTP(), true},
		{"domains", map[string]any{"domain": "skeleton.example.org"}, false},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			coll := "/api/v1/" + tc.kind
			cr := e.do("POST", coll, tc.body)
			if cr.Code != 201 {
				t.Fatalf("create: %d %s", cr.Code, cr.Body)
			}
			id := cr.str("data.id")
			path := coll + "/" + id
			if loc := cr.Header.Get("Location"); loc != path {
				t.Fatalf("Location %q, want %q", loc, path)
			}
			if tag := cr.Header.Get("ETag"); tag != `W/"1"` {
				t.Fatalf("create ETag %q", tag)
			}

			g := e.do("GET", path, nil)
			if g.Code != 200 || g.str("data.id") != id || g.Header.Get("ETag") != `W/"1"` {
				t.Fatalf("get: %d %q %s", g.Code, g.Header.Get("ETag"), g.Body)
			}

			// Another team's record, and an ID of the wrong shape.
			for _, m := range []string{"GET", "PATCH", "DELETE"} {
				if m == "PATCH" && !tc.patch {
					continue
				}
				expectErr(t, e.do(m, path, map[string]any{}, other...), 404, "not_found", "")
				expectErr(t, e.do(m, coll+"/nope_123", map[string]any{}), 404, "not_found", "")
			}

			if tc.patch {
				p := e.do("PATCH", path, map[string]any{}, "If-Match", `W/"1"`)
				if p.Code != 200 || p.Header.Get("ETag") != `W/"1"` {
					t.Fatalf("empty patch: %d %q %s", p.Code, p.Header.Get("ETag"), p.Body)
				}
				expectErr(t, e.do("PATCH", path, map[string]any{}, "If-Match", `W/"7"`), 409, "conflict", "")
			}

			expectErr(t, e.do("DELETE", path, nil, "If-Match", `W/"7"`), 409, "conflict", "")
			if g := e.do("GET", path, nil); g.Code != 200 {
				t.Fatalf("a refused DELETE removed the record: %d %s", g.Code, g.Body)
			}
			d := e.do("DELETE", path, nil, "If-Match", `W/"1"`)
			if d.Code != 200 || d.str("data.id") != id || d.get("data.deleted") != true {
				t.Fatalf("delete: %d %s", d.Code, d.Body)
			}
			expectErr(t, e.do("GET", path, nil), 404, "not_found", "")
		})
	}
}

package dashboard

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// TestGroupDeleteWarningPages: the group delete warning reads every page
// of keys (it read only the first 100): with 250 keys, a dependant made
// first and one made last are both named, whichever order the API lists
// them in. A key that may not read keys or mailboxes is told the check
// is partial, not that nothing depends on the group.
func TestGroupDeleteWarningPages(t *testing.T) {
	e := newEnv(t)
	_, body := e.apiDo("POST", "/api/v1/delivery-groups", e.root, `{"name":"eu"}`)
	gid := extract(t, body, `"id":"([^"]+)"`)
	add := func(name string, scope store.Scope) {
		secret := store.NewSecret(store.SecretPrefixSending)
		if err := e.st.CreateKey(&store.APIKey{ID: store.NewID(store.PrefixKey), TeamID: e.team.ID, Name: name, Type: store.KeySending,
			Prefix: secret[:12], Hash: store.HashSecret(secret), SendScope: scope, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	group := store.Scope{Type: "group", GroupPublicIDs: []string{gid}}
	add("first-dependant", group)
	for i := range 248 {
		add(fmt.Sprintf("filler-%03d", i), store.Scope{Type: "all"})
	}
	add("last-dependant", group)
	b := e.browser()
	b.signIn(e.root)
	p := b.get("/groups/" + gid + "/delete")
	if !strings.Contains(p.Body, "first-dependant") || !strings.Contains(p.Body, "last-dependant") || strings.Contains(p.Body, "group-unchecked") {
		t.Fatalf("warning misses a dependant: %s", p.Body)
	}
	lim := e.browser()
	lim.signIn(e.addKey(e.team.ID, store.KeyRoot, "group.read", "group.delete"))
	p = lim.get("/groups/" + gid + "/delete")
	if !strings.Contains(p.Body, `id="group-unchecked"`) || !strings.Contains(p.Body, "key.read") || strings.Contains(p.Body, "No key or mailbox depends on it") {
		t.Fatalf("a partial check reads as complete: %s", p.Body)
	}
}

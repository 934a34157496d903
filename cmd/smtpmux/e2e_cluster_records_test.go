package main

import (
	"bytes"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/smtpmux/smtpmux/relay/oauth/oauthtest"
)

// clusterOAuthSection is an [oauth.google] table on idp, for the end of
// the config's [delivery] text (the next section header closes it). The
// redirect URL stands for the balancer in front of every node.
func clusterOAuthSection(idp *oauthtest.Server) string {
	p := idp.Provider("http://127.0.0.1:1/oauth/callback")
	return fmt.Sprintf(`
[oauth.google]
client_id = %q
client_secret = %q
redirect_url = %q
auth_url = %q
token_url = %q
userinfo_url = %q
api_base_url = %q
`, p.ClientID, p.ClientSecret, p.RedirectURL, p.AuthURL, p.TokenURL, p.UserInfoURL, p.APIBaseURL)
}

// testClusterRecords checks the state of record that lives in etcd
// beside the bucket records: Idempotency-Key records, OAuth connect
// states, and a team created in one write. (Deleting a group larger
// than one etcd transaction is TestDeleteLargeGroup in cluster/: through
// the binary, making its 150 providers took 7 s of the suite.) key is a sending key of the
// default team with a working provider.
func testClusterRecords(t *testing.T, nodes []*proc, key string, idp *oauthtest.Server) {
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]

	t.Run("an Idempotency-Key retried on another node is replayed", func(t *testing.T) {
		msg := `{"from":"app@example.com","to":"user@example.net","subject":"once in the cluster","text_body":"only once"}`
		code1, body1 := postSend(t, n1, key, "cluster-retry-1", msg)
		if code1 != 200 || !bytes.Contains(body1, []byte(`"status":"queued"`)) {
			t.Fatalf("send on n1: %d %s", code1, body1)
		}
		// A second message would carry another message ID: the same bytes
		// are the first answer, replayed.
		code2, body2 := postSend(t, n2, key, "cluster-retry-1", msg)
		if code2 != code1 || !bytes.Equal(body1, body2) {
			t.Fatalf("the retry on n2 got %d %s, want the first answer %s", code2, body2, body1)
		}
		code3, body3 := postSend(t, n3, key, "cluster-retry-1", strings.Replace(msg, "only once", "changed", 1))
		if code3 != 409 || !bytes.Contains(body3, []byte("idempotency_conflict")) {
			t.Fatalf("same key, another body, on n3: %d %s", code3, body3)
		}
	})

	var teamKey string
	t.Run("a team is created in one etcd write", func(t *testing.T) {
		writes := func() int {
			return metricValue(t, n3.metrics(), "smtpmux_cluster_etcd_write_txns_total")
		}
		before := writes()
		teamKey = clusterTeam(t, n3, "oauth-team")
		if w := writes() - before; w != 1 {
			t.Fatalf("POST /operator/teams made %d etcd writes, want 1 (team, managed account and root key together)", w)
		}
	})

	t.Run("an OAuth flow started on n1 finishes on n2, once", func(t *testing.T) {
		code, resp := n1.apiAs(teamKey, "POST", "/providers/oauth/google/start", nil)
		if code != 200 {
			t.Fatalf("start on n1: %d %v", code, resp)
		}
		oc, state, err := idp.Consent(data(resp)["authorization_url"].(string))
		if err != nil {
			t.Fatal(err)
		}
		callback := "//oauth/callback?" + url.Values{"code": {oc}, "state": {state}}.Encode()
		code, resp = n2.apiAs("", "GET", callback, nil)
		if code != 201 || data(resp)["type"] != "gmail_api" || data(resp)["oauth_email"] != idp.Email {
			t.Fatalf("callback on n2: %d %v", code, resp)
		}
		// The state was consumed cluster-wide: the same callback on n3
		// (a browser's reload, or a replay) is refused.
		if code, resp := n3.apiAs("", "GET", callback, nil); code != 422 {
			t.Fatalf("the used state on n3: %d %v", code, resp)
		}
		if code, _ := n3.apiAs(teamKey, "GET", "/providers/"+data(resp)["id"].(string), nil); code != 200 {
			t.Fatalf("the connected provider on n3: %d", code)
		}
	})
}

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/etcdtest"
	"github.com/smtpmux/smtpmux/internal/testpeer"
	"github.com/smtpmux/smtpmux/relay/oauth/oauthtest"
)

// clusterExtra is the config of a cluster node: the [cluster] section on
// etcd eps under prefix, and an operator token for GET /operator/nodes.
func clusterExtra(eps []string, prefix, nodeID string, extra map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range extra {
		out[k] = v
	}
	out[""] += fmt.Sprintf("operator_token = %q\n[cluster]\netcd_endpoints = [\"%s\"]\nkey_prefix = %q\nnode_id = %q\ncluster_token = %q\n",
		testOperatorToken, strings.Join(eps, `", "`), prefix, nodeID, "e2e-cluster-token-0123456789")
	return out
}

// newClusterDaemon is newDaemon as a cluster node (advertising its API
// address).
func newClusterDaemon(t *testing.T, eps []string, prefix, nodeID string, extra map[string]string) *proc {
	t.Helper()
	d := clusterProc(t, eps, prefix, nodeID, extra)
	d.start()
	t.Cleanup(d.stop)
	return d
}

// clusterProc writes a cluster node's config without starting it.
func clusterProc(t *testing.T, eps []string, prefix, nodeID string, extra map[string]string) *proc {
	t.Helper()
	d := &proc{t: t, dir: t.TempDir(), smtpAddr: freeAddr(t), httpAddr: freeAddr(t)}
	writeClusterConfig(t, d, eps, prefix, nodeID, extra)
	return d
}

// writeClusterConfig writes d's config as a cluster node advertising its
// API address (cluster mode requires an advertise_url).
func writeClusterConfig(t *testing.T, d *proc, eps []string, prefix, nodeID string, extra map[string]string) {
	t.Helper()
	extra = clusterExtra(eps, prefix, nodeID, extra)
	extra[""] += fmt.Sprintf("advertise_url = %q\n", "http://"+d.httpAddr)
	writeProcConfig(t, d, extra)
}

// within polls cond every 10 ms until it holds, failing after d; it
// returns how long it took.
func within(t *testing.T, what string, d time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// TestCluster runs three smtpmux nodes on one real 3-member etcd. The
// subtests share them and run in order: each leaves the cluster as the
// next expects it.
func TestCluster(t *testing.T) {
	etcd := etcdtest.Start(t, 3)
	eps := etcd.Endpoints()
	up := testpeer.Start(t, testpeer.Options{})
	nodes := make([]*proc, 3)
	var wg sync.WaitGroup
	// The first node alone, then two at once: the bootstrap lock must
	// leave one default team and one root key however they race.
	// A minute between attempts: the breaker test counts one attempt per
	// node.
	// The OAuth client (at the end of [delivery]) is for the connect flow
	// that starts on one node and finishes on another.
	idp := oauthtest.New(t, "google")
	slowRetry := map[string]string{"delivery": `retry_schedule = ["1m", "1m"]` + clusterOAuthSection(idp)}
	nodes[0] = newClusterDaemon(t, eps, "/e2e/", "n1", slowRetry)
	for i := 1; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i] = clusterProc(t, eps, "/e2e/", fmt.Sprintf("n%d", i+1), slowRetry)
		}()
	}
	wg.Wait()
	errs := make([]error, 3)
	for i := 1; i < 3; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = nodes[i].tryStart() }()
	}
	wg.Wait()
	for i := 1; i < 3; i++ {
		t.Cleanup(nodes[i].stop)
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]

	t.Run("membership", func(t *testing.T) {
		for _, d := range nodes {
			_, resp := d.apiAs("", "GET", "//readyz", nil)
			if c := data(resp)["cluster"].(map[string]any); c["state"] != "member" {
				t.Fatalf("readyz: %v", resp)
			}
		}
		code, resp := n2.apiAs(testOperatorToken, "GET", "/operator/nodes", nil)
		list, _ := resp["data"].([]any)
		if code != 200 || len(list) != 3 || list[1].(map[string]any)["node_id"] != "n2" || list[1].(map[string]any)["self"] != true {
			t.Fatalf("nodes: %d %v", code, resp)
		}
		code, resp = n3.apiAs(testOperatorToken, "GET", "/operator/teams", nil)
		if teams := resp["data"].([]any); code != 200 || len(teams) != 1 {
			t.Fatalf("teams after three concurrent bootstraps: %d %v", code, resp)
		}
	})

	var key, provID string
	t.Run("provider made on n1 carries a send on n3", func(t *testing.T) {
		n1.deactivate(n1.managedID())
		key = n1.sendingKey(nil)
		provID = n1.addProvider(plainProvider(up, "up", nil))
		took := within(t, "provider on every node", time.Second, func() bool {
			for _, d := range []*proc{n2, n3} {
				if code, _ := d.api("GET", "/providers/"+provID, nil); code != 200 {
					return false
				}
			}
			return true
		})
		t.Logf("a provider created on n1 was on n2 and n3 after %v", took)
		if m := n2.metrics(); !strings.Contains(m, "smtpmux_cluster_etcd_write_txns_total 0") {
			t.Fatalf("n2 made etcd writes though no write was made through it")
		}
		c := n3.client(key)
		defer c.Close()
		id, err := sendOne(c, "app@example.com", []string{"user@example.net"}, msgBody("cluster-1"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(id, "-n3") {
			t.Fatalf("message ID %q does not name n3", id)
		}
		up.WaitMessages(t, 1, 15*time.Second)
		if e := n3.waitEmail(id); e["status"] != "sent" || !strings.Contains(fmt.Sprint(e), provID) {
			t.Fatalf("email on n3: %v", e)
		}
		if logs := n3.emailLogs(); logs[id] == nil {
			t.Fatalf("/emails/logs on n3 lacks %s: %v", id, logs)
		}
		// Asked of n1, the email is fetched from n3, which holds it; with
		// another team's key n3 answers 404, as it would itself.
		if e := n1.email(id); e["id"] != id || e["status"] != "sent" {
			t.Fatalf("GET /emails/%s on n1: %v", id, e)
		}
		code, resp := n1.apiAs(testOperatorToken, "POST", "/operator/teams", map[string]any{"name": "other"})
		if code != 201 {
			t.Fatalf("create team: %d %v", code, resp)
		}
		other := data(resp)["root_key"].(map[string]any)["key"].(string)
		if code, _ := n1.apiAs(other, "GET", "/emails/"+id, nil); code != 404 {
			t.Fatalf("another team's key, forwarded: %d", code)
		}
		// Hostile: another team's provider from another node, and IDs
		// whose node part tries to leave the path, are not found.
		if code, _ := n2.apiAs(other, "GET", "/providers/"+provID, nil); code != 404 {
			t.Fatalf("another team's provider on n2: %d", code)
		}
		for _, bad := range []string{id[:28] + "-..%2Fapi", id[:28] + "-N3", id[:28] + "-" + strings.Repeat("a", 40)} {
			if code, _ := n1.apiBad("GET", "/emails/"+bad, nil); code != 404 {
				t.Fatalf("GET /emails/%s: %d", bad, code)
			}
		}
	})

	// SPEC §3: a stale If-Match answers 409 conflict (not 412).
	t.Run("stale If-Match loses across nodes", func(t *testing.T) {
		code, h, _ := n1.apiHeaders(testRootKey, "GET", "/providers/"+provID, nil, nil)
		etag := h.Get("ETag")
		if code != 200 || etag == "" {
			t.Fatalf("GET: %d %q", code, etag)
		}
		if code, _, body := n2.apiHeaders(testRootKey, "PATCH", "/providers/"+provID, map[string]any{"name": "by-n2"}, map[string]string{"If-Match": etag}); code != 200 {
			t.Fatalf("PATCH on n2: %d %s", code, body)
		}
		if code, _, body := n1.apiHeaders(testRootKey, "PATCH", "/providers/"+provID, map[string]any{"name": "by-n1"}, map[string]string{"If-Match": etag}); code != 409 || !strings.Contains(string(body), `"conflict"`) {
			t.Fatalf("PATCH on n1 with the stale ETag: %d %s", code, body)
		}
	})

	t.Run("key revoked on n2 is refused on n1", func(t *testing.T) {
		secret, id := n1.sendingKeyWithID(nil)
		within(t, "key on n2", time.Second, func() bool { code, _ := n2.api("GET", "/api-keys/"+id, nil); return code == 200 })
		n2.must(200, "DELETE", "/api-keys/"+id, nil)
		within(t, "revoked key refused on n1", time.Second, func() bool {
			c, err := dialQuiet(n1, secret)
			if err == nil {
				c.Close()
				return false
			}
			return true
		})
	})

	var fanRoot string
	t.Run("reports answer for the whole cluster from any node", func(t *testing.T) { fanRoot = testClusterFanOut(t, nodes, up) })
	t.Run("idempotency, OAuth states and team creation are cluster-wide", func(t *testing.T) { testClusterRecords(t, nodes, key, idp) })

	t.Run("quotas and health are cluster-wide", func(t *testing.T) { testClusterQuotas(t, nodes) })

	t.Run("wrong secret_key refuses to start", func(t *testing.T) {
		d := &proc{t: t, dir: t.TempDir(), smtpAddr: freeAddr(t), httpAddr: freeAddr(t)}
		writeClusterConfig(t, d, eps, "/e2e/", "n4", map[string]string{"secret_key": "another-secret-key-0123456789"})
		out, err := exec.Command(binPath, "serve", "--config", d.cfgPath).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "secret_key cannot open the cluster's canary") {
			t.Fatalf("serve with another secret_key: %v\n%s", err, out)
		}
	})

	t.Run("etcd down: writes 503, mail flows, then converges", func(t *testing.T) {
		etcd.StopAll()
		t0 := time.Now()
		step := func(what string) { t.Logf("%5.1fs %s", time.Since(t0).Seconds(), what) }
		defer step("end")
		code, resp := n1.api("POST", "/providers", plainProvider(up, "while-down", nil))
		if code != 503 || resp["error"].(map[string]any)["code"] != "cluster_unavailable" {
			t.Fatalf("write with etcd down: %d %v", code, resp)
		}
		if code, h, _ := n1.apiHeaders(testRootKey, "PATCH", "/providers/"+provID, map[string]any{"name": "down"}, nil); code != 503 || h.Get("Retry-After") == "" {
			t.Fatalf("PATCH with etcd down: %d, Retry-After %q", code, h.Get("Retry-After"))
		}
		if p := n1.provider(provID); p["name"] != "by-n2" {
			t.Fatalf("a refused write changed the view: %v", p)
		}
		for _, d := range []*proc{n1, n2} {
			c := d.client(key)
			id, err := sendOne(c, "app@example.com", []string{"user@example.net"}, msgBody("while-down-"+d.httpAddr))
			c.Close()
			if err != nil {
				t.Fatalf("SMTP with etcd down: %v", err)
			}
			if e := d.waitEmail(id); e["status"] != "sent" {
				t.Fatalf("delivery with etcd down: %v", e)
			}
		}
		within(t, "n3 degraded", 15*time.Second, func() bool {
			_, resp := n3.apiAs("", "GET", "//readyz", nil)
			return data(resp)["cluster"].(map[string]any)["state"] == "degraded"
		})
		if m := n3.metrics(); !strings.Contains(m, "smtpmux_cluster_member 0") {
			t.Fatal("metrics do not show n3 degraded")
		}
		// A node restarted while etcd is away starts on its last view:
		// its key still authenticates and its mail still goes.
		step("degraded seen")
		n3.stop()
		step("n3 stopped")
		// A report asked of n1 while n3 is down (and etcd away: n1 uses
		// the last list of nodes it got) cannot be whole: 503, naming n3.
		if fanRoot != "" {
			code, h, body := n1.apiHeaders(fanRoot, "GET", "/emails/logs", nil, nil)
			if code != 503 || !strings.Contains(string(body), "n3") || h.Get("Retry-After") == "" {
				t.Fatalf("logs with n3 down: %d %s", code, body)
			}
		}
		// A graceful stop completes with etcd away (stop kills a daemon
		// that has not exited 15 s after SIGTERM: exit code -1).
		if ec := n3.cmd.ProcessState.ExitCode(); ec != 0 {
			t.Fatalf("n3 did not stop by itself with etcd down: exit %d", ec)
		}
		n3.start()
		step("n3 started")
		c := n3.client(key)
		mid, err := sendOne(c, "app@example.com", []string{"user@example.net"}, msgBody("n3-restarted-while-down"))
		c.Close()
		if err != nil {
			t.Fatalf("SMTP on n3 restarted with etcd down: %v", err)
		}
		if e := n3.waitEmail(mid); e["status"] != "sent" {
			t.Fatalf("delivery on n3 restarted with etcd down: %v", e)
		}
		etcd.StartAll()
		step("etcd back")
		var id string
		within(t, "a write after etcd returned", 30*time.Second, func() bool {
			code, resp := n1.api("POST", "/providers", plainProvider(up, "after", nil))
			if code == 201 {
				id = data(resp)["id"].(string)
			}
			return code == 201
		})
		step("write accepted")
		// Converges: each node's watch is back once its client has
		// reconnected, which after an outage waits on gRPC's back-off
		// (the 1 s propagation in normal running is the subtest above).
		within(t, "the write on every node", 10*time.Second, func() bool {
			for _, d := range []*proc{n2, n3} {
				if code, _ := d.api("GET", "/providers/"+id, nil); code != 200 {
					return false
				}
			}
			return true
		})
		within(t, "n3 a member again", 15*time.Second, func() bool {
			_, resp := n3.apiAs("", "GET", "//readyz", nil)
			return data(resp)["cluster"].(map[string]any)["state"] == "member"
		})
		if m := n3.metrics(); !strings.Contains(m, "smtpmux_cluster_member 1") {
			t.Fatal("metrics do not show n3 a member again")
		}
	})

	t.Run("import is idempotent", func(t *testing.T) {
		single := newDaemon(t, nil)
		p := single.addProvider(plainProvider(up, "imported", nil))
		single.stop()
		db := filepath.Join(single.dir, "data", "smtpmux.db")
		cfg := &proc{t: t, dir: t.TempDir(), smtpAddr: "127.0.0.1:1", httpAddr: "127.0.0.1:1"}
		writeClusterConfig(t, cfg, eps, "/imported/", "importer", nil)
		run := func(args ...string) string {
			out, err := exec.Command(binPath, append([]string{"cluster", "import", "--config", cfg.cfgPath, "--from", db}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("import %v: %v\n%s", args, err, out)
			}
			return string(out)
		}
		dry := run("--dry-run")
		first := run()
		second := run()
		if !strings.Contains(dry, "would write") || strings.Contains(dry, "would write 0,") ||
			strings.Contains(first, "wrote 0,") || !strings.Contains(second, "wrote 0,") {
			t.Fatalf("dry run %q\nfirst %q\nsecond %q", dry, first, second)
		}
		d := newClusterDaemon(t, eps, "/imported/", "m1", nil)
		if got := d.provider(p); got["name"] != "imported" {
			t.Fatalf("imported provider: %v", got)
		}
		// The file was the single node's: the cluster did not make a
		// second default team.
		code, resp := d.apiAs(testOperatorToken, "GET", "/operator/teams", nil)
		if teams := resp["data"].([]any); code != 200 || len(teams) != 1 {
			t.Fatalf("teams: %v", resp)
		}
		if _, err := os.Stat(db); err != nil {
			t.Fatal(err)
		}
	})
}

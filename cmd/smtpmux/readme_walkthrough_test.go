package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestREADMEWalkthrough runs the README's five-minute walkthrough as
// written, against the built daemon: only the addresses, the sink's
// directory and the root key are put in. It proves the walkthrough needs
// no tool beyond the ones it names (no jq, no curl) and still works.
func TestREADMEWalkthrough(t *testing.T) {
	requirePeer(t, "swaks")
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)## Five-minute walkthrough\n(.*?)```sh\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no walkthrough block")
	}
	intro, script := string(m[1]), string(m[2])
	for _, tool := range []string{"swaks", "awk", "grep", "ls"} {
		if !strings.Contains(intro, tool) {
			t.Errorf("the walkthrough uses %s without saying so", tool)
		}
	}
	for _, tool := range []string{"jq", "curl"} {
		if regexp.MustCompile(`\b` + tool + `\b`).MatchString(script) {
			t.Errorf("the walkthrough uses %s", tool)
		}
	}

	// The intro has the daemon started on config.example.toml with local
	// upstreams allowed (step 3's sink is on 127.0.0.1): the edit must do
	// that, and this daemon runs with what it gives.
	work := t.TempDir()
	sedLine := regexp.MustCompile(`(?m)^    (sed .*config\.example\.toml > local\.toml)$`).FindStringSubmatch(intro)
	if sedLine == nil {
		t.Fatal("the walkthrough does not say how to allow the local upstream")
	}
	edit := exec.Command("bash", "-c", "set -euo pipefail; cp ../../config.example.toml "+work+"/ && cd "+work+" && "+sedLine[1])
	if out, err := edit.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", sedLine[1], err, out)
	}
	local, err := os.ReadFile(filepath.Join(work, "local.toml"))
	if err != nil || !regexp.MustCompile(`(?m)^allow_private_hosts = true$`).Match(local) {
		t.Fatalf("local.toml does not allow private hosts (%v)", err)
	}
	d := newDaemon(t, map[string]string{"providers": "allow_private_hosts = true\nses_default_credentials = false"})
	sinkDir := filepath.Join(work, "upstream")
	repo, _ := filepath.Abs("../..")
	r := strings.NewReplacer(
		"127.0.0.1:2525", d.smtpAddr,
		"127.0.0.1:2526", freeAddr(t),
		"127.0.0.1:2580", freeAddr(t),
		"/tmp/upstream", sinkDir,
		"smx_root_…", testRootKey,
		"go build -o smtpmux ./cmd/smtpmux", "cp "+binPath+" smtpmux",
		"go build -o smtpsink ./bench/cmd/smtpsink", "(cd "+repo+" && go build -o "+work+"/smtpsink ./bench/cmd/smtpsink)",
	)
	script = r.Replace(script)
	// The sink's port is in the provider as a number, apart from its address.
	sinkPort := regexp.MustCompile(`-addr 127\.0\.0\.1:(\d+)`).FindStringSubmatch(script)[1]
	script = strings.Replace(script, "--port 2526", "--port "+sinkPort, 1)
	// The sink needs a moment to listen before the provider is used; the
	// daemon retries a refused connection, but wait for it explicitly.
	script = strings.Replace(script, "\n./smtpmux providers create",
		"\nup=; for i in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/"+sinkPort+") 2>/dev/null && up=1 && break; sleep 0.1; done; test -n \"$up\"\n./smtpmux providers create", 1)
	script = "set -euo pipefail\ncd " + work + "\n" + script + "\ntest -n \"$KEY\" && test -n \"$MANAGED\" && test -n \"$EML\"\necho \"EML=$EML\"\n"

	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "SMTPMUX_URL=http://"+d.httpAddr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the sink it starts goes with it
	// A file, not a pipe: the sink the script leaves running holds its
	// output open, and Wait would wait for the sink too.
	outFile, err := os.Create(filepath.Join(work, "walkthrough.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer outFile.Close()
	cmd.Stdout, cmd.Stderr = outFile, outFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) })
	err = cmd.Wait()
	raw, _ := os.ReadFile(outFile.Name())
	out := bytes.NewBuffer(raw)
	if err != nil {
		t.Fatalf("the walkthrough failed: %v\n%s", err, out.String())
	}
	eml := regexp.MustCompile(`EML=(eml_[a-z0-9]+)`).FindStringSubmatch(out.String())
	if eml == nil {
		t.Fatalf("no message id:\n%s", out.String())
	}
	if e := d.waitEmail(eml[1]); e["status"] != "sent" {
		t.Fatalf("the walkthrough's second message: %v\n%s", e, out.String())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if es, _ := os.ReadDir(sinkDir); len(es) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing reached the sink in %s\n%s", sinkDir, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if es, _ := os.ReadDir(filepath.Join(d.dir, "data", "outbox")); len(es) == 0 {
		t.Errorf("the first message is not in the managed outbox\n%s", out.String())
	}
}

package testpeer

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// StartSESLocal starts aws-ses-v2-local (an npm package: a local SES v1/v2
// API nobody here wrote) on a free loopback port and returns its base URL.
// account is the GetAccount answer it serves (AWS_SES_ACCOUNT), or "".
// A missing peer skips the test, except under CI=true, where it fails:
// the suite must not go green by silently testing less.
func StartSESLocal(t testing.TB, account string) string {
	t.Helper()
	bin := sesLocalBinary()
	if bin == "" {
		const hint = "test peer aws-ses-v2-local (or node) is missing: cd <repo> && npm install --no-save aws-ses-v2-local@2.10.2"
		if os.Getenv("CI") == "true" {
			t.Fatal(hint)
		}
		t.Skip(hint)
	}
	// The port is free now; a race with another process shows up as the
	// peer exiting, reported below, not as a hang.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	cmd := exec.Command(bin, "--host", "127.0.0.1", "--port", fmt.Sprint(port))
	cmd.Env = os.Environ()
	if account != "" {
		cmd.Env = append(cmd.Env, "AWS_SES_ACCOUNT="+account)
	}
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})

	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("aws-ses-v2-local exited early:\n%s", out.String())
		default:
		}
		if resp, err := http.Get(base + "/health-check"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("aws-ses-v2-local not ready on %s after 20s:\n%s", base, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sesLocalBinary is the repo's node_modules copy, else one on PATH.
func sesLocalBinary() string {
	if _, err := exec.LookPath("node"); err != nil {
		return ""
	}
	if mods := NodeModules(); mods != "" {
		bin := filepath.Join(mods, ".bin", "aws-ses-v2-local")
		if _, err := os.Stat(bin); err == nil {
			return bin
		}
	}
	bin, _ := exec.LookPath("aws-ses-v2-local")
	return bin
}

// NodeModules is the repository's node_modules directory, where
// scripts/install-test-peers.sh puts the npm test peers: found from the
// working directory up to go.mod. "" when there is none.
func NodeModules() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for ; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			mods := filepath.Join(dir, "node_modules")
			if _, err := os.Stat(mods); err != nil {
				return ""
			}
			return mods
		}
		if filepath.Dir(dir) == dir {
			return ""
		}
	}
}

// lockedBuffer collects a peer's output from two pipes' goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

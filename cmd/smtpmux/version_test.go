package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVersionFromBuild: "smtpmux version" reports what the build says,
// never a fixed string: the -ldflags value "make build" sets from git
// describe, and without it the commit Go recorded from the checkout.
func TestVersionFromBuild(t *testing.T) {
	git := requirePeer(t, "git")
	mk := requirePeer(t, "make")
	head, err := exec.Command(git, "rev-parse", "HEAD").Output()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("not a git checkout: %v", err)
		}
		t.Skipf("not a git checkout: %v", err)
	}
	rev := strings.TrimSpace(string(head))
	dir := t.TempDir()
	versionOf := func(bin string) string {
		t.Helper()
		out, err := exec.Command(bin, "version").Output()
		if err != nil {
			t.Fatalf("%s version: %v", bin, err)
		}
		return strings.TrimSpace(string(out))
	}

	bin := filepath.Join(dir, "make-build")
	if out, err := exec.Command(mk, "-s", "-C", "../..", "build", "OUT="+bin).CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	describe, _ := exec.Command(git, "describe", "--tags", "--always", "--dirty").Output()
	if got, want := versionOf(bin), "smtpmux "+strings.TrimSpace(string(describe)); got != want {
		t.Errorf("make build: %q, want %q", got, want)
	}

	// Go records no VCS information in a linked git worktree (its .git is
	// a file); CI and users build in clones.
	if fi, err := os.Stat("../../.git"); err == nil && !fi.IsDir() {
		t.Logf("a git worktree: the build-info half is checked only in a clone")
		return
	}
	bin = filepath.Join(dir, "vcs-build")
	// -buildvcs=true on the command line wins over a GOFLAGS that turns it off.
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// Go makes a pseudo-version of the commit (v0.0.0-<time>-<rev>).
	if got := versionOf(bin); !strings.Contains(got, rev[:12]) {
		t.Errorf("go build in a checkout: %q, want a version naming commit %s", got, rev[:12])
	}
}

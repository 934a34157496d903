package packaging

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

const testVersion = "0.1.0-test"

// TestDebInstallsAndChecksConfig builds the linux/amd64 .deb the way `make
// dist` does, installs it with dpkg into an empty root (dpkg --root, the
// maintainer scripts run with DPKG_ROOT), checks what landed where, runs
// check-config on the installed config with the installed binary, then
// upgrades, removes and purges it.
func TestDebInstallsAndChecksConfig(t *testing.T) {
	goBin := requireTool(t, "go")
	requireTool(t, "dpkg-deb")
	dir := t.TempDir()

	// The static binary, as the dist target builds it.
	bin := filepath.Join(dir, "smtpmux")
	build := exec.Command(goBin, "build", "-trimpath", "-ldflags", "-s -w -X main.version="+testVersion, "-o", bin, "../cmd/smtpmux")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	assertStatic(t, bin)

	out := runOK(t, exec.Command("./build-deb.sh", "amd64", bin, filepath.Join(dir, "out"), testVersion))
	deb := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
	if filepath.Base(deb) != "smtpmux_0.1.0~test-1_amd64.deb" {
		t.Fatalf("build-deb.sh printed %q, want the path of smtpmux_0.1.0~test-1_amd64.deb\n%s", deb, out)
	}

	// Control fields and the control archive.
	for field, want := range map[string]string{
		"Package": "smtpmux", "Version": "0.1.0~test-1", "Architecture": "amd64",
		"Section": "mail", "Maintainer": "smtpmux maintainers <maintainers@smtpmux.invalid>",
	} {
		if got := strings.TrimSpace(runOK(t, exec.Command("dpkg-deb", "--field", deb, field))); got != want {
			t.Errorf("control field %s = %q, want %q", field, got, want)
		}
	}
	ctl := filepath.Join(dir, "control")
	runOK(t, exec.Command("dpkg-deb", "--control", deb, ctl))
	if b, _ := os.ReadFile(filepath.Join(ctl, "conffiles")); string(b) != "/etc/smtpmux/config.toml\n" {
		t.Errorf("conffiles = %q, want only /etc/smtpmux/config.toml", b)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		p := filepath.Join(ctl, s)
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("maintainer script %s: %v, mode %v; want 0755", s, err, fi)
		}
		runOK(t, exec.Command("sh", "-n", p))
	}

	dpkg, err := exec.LookPath("dpkg")
	if err != nil || os.Geteuid() != 0 {
		// Installing runs useradd and chown as root. An ordinary CI runner
		// is not root, so there (as on a developer's machine) the package
		// is unpacked with dpkg-deb -x and everything that needs no root is
		// checked, the installed binary's check-config included; the
		// install, upgrade and purge steps run where the test is root.
		root := filepath.Join(dir, "x")
		runOK(t, exec.Command("dpkg-deb", "-x", deb, root))
		checkFiles(t, root)
		checkConfig(t, root)
		t.Logf("not root (euid %d) or no dpkg (%v): checked the unpacked package only", os.Geteuid(), err)
		return
	}

	root := filepath.Join(dir, "root")
	seedRoot(t, root)
	dpkgIn := func(args ...string) string {
		cmd := exec.Command(dpkg, append([]string{"--root=" + root, "--force-script-chrootless", "--log=/dev/null"}, args...)...)
		// The scripts call useradd and install, which live in sbin.
		cmd.Env = append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
		return runOK(t, cmd)
	}

	out = dpkgIn("--install", deb)
	if !strings.Contains(out, "systemctl enable --now smtpmux") {
		t.Errorf("first install does not tell how to start the service:\n%s", out)
	}
	checkFiles(t, root)
	checkConfig(t, root)

	// The system user: no login shell, a system uid, home on the state dir.
	uid, gid := -1, -1
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	for _, line := range strings.Split(string(passwd), "\n") {
		f := strings.Split(line, ":")
		if len(f) == 7 && f[0] == "smtpmux" {
			uid, _ = strconv.Atoi(f[2])
			gid, _ = strconv.Atoi(f[3])
			if f[5] != "/var/lib/smtpmux" || f[6] != "/usr/sbin/nologin" || uid <= 0 || uid >= 1000 {
				t.Errorf("smtpmux user = %q, want a system uid, home /var/lib/smtpmux, shell /usr/sbin/nologin", line)
			}
		}
	}
	if uid < 0 {
		t.Fatalf("postinst created no smtpmux user:\n%s", passwd)
	}
	assertOwned(t, filepath.Join(root, "var/lib/smtpmux"), os.ModeDir|0o700, uid, gid)
	assertOwned(t, filepath.Join(root, "etc/smtpmux"), os.ModeDir|0o750, 0, gid)
	assertOwned(t, filepath.Join(root, "etc/smtpmux/config.toml"), 0o640, 0, gid)
	if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/smtpmux.service")); err == nil {
		t.Error("the install enabled the service; it must wait for the operator")
	}

	// Upgrade (same version again): the operator's config edits stay and
	// the first-install message is not repeated.
	cfg := filepath.Join(root, "etc/smtpmux/config.toml")
	edited := append(readFile(t, cfg), "# edited by the operator\n"...)
	if err := os.WriteFile(cfg, edited, 0o640); err != nil {
		t.Fatal(err)
	}
	if out = dpkgIn("--install", deb); strings.Contains(out, "systemctl enable --now") {
		t.Errorf("reinstall repeated the first-install message:\n%s", out)
	}
	if !bytes.Equal(readFile(t, cfg), edited) {
		t.Error("reinstall replaced the edited config")
	}

	// Data the daemon would have written must outlive remove and purge.
	db := filepath.Join(root, "var/lib/smtpmux/smtpmux.db")
	if err := os.WriteFile(db, []byte("store"), 0o600); err != nil {
		t.Fatal(err)
	}
	dpkgIn("--remove", "smtpmux")
	if _, err := os.Stat(filepath.Join(root, "usr/bin/smtpmux")); !os.IsNotExist(err) {
		t.Errorf("remove left the binary: %v", err)
	}
	if _, err := os.Stat(cfg); err != nil {
		t.Errorf("remove must keep the conffile: %v", err)
	}
	dpkgIn("--purge", "smtpmux")
	if _, err := os.Stat(cfg); !os.IsNotExist(err) {
		t.Errorf("purge left the config: %v", err)
	}
	if b, err := os.ReadFile(db); err != nil || string(b) != "store" {
		t.Errorf("purge touched the store: %q, %v", b, err)
	}
	if !strings.Contains(string(readFile(t, filepath.Join(root, "etc/passwd"))), "\nsmtpmux:") {
		t.Error("purge removed the smtpmux user (it owns the kept state)")
	}
}

// checkFiles checks the payload under root: the binary, the unit (the
// repository's, pointed at /usr/bin) and the packaged config.
func checkFiles(t *testing.T, root string) {
	t.Helper()
	assertMode(t, filepath.Join(root, "usr/bin/smtpmux"), 0o755)
	assertMode(t, filepath.Join(root, "usr/lib/systemd/system/smtpmux.service"), 0o644)
	assertMode(t, filepath.Join(root, "usr/share/doc/smtpmux/copyright"), 0o644)
	unit := string(readFile(t, filepath.Join(root, "usr/lib/systemd/system/smtpmux.service")))
	repoUnit := strings.ReplaceAll(string(readFile(t, "../systemd/smtpmux.service")), "/usr/local/bin/smtpmux", "/usr/bin/smtpmux")
	if unit != repoUnit {
		t.Errorf("packaged unit differs from systemd/smtpmux.service (beyond the binary path):\n%s", unit)
	}
	for _, want := range []string{"ExecStart=/usr/bin/smtpmux serve --config /etc/smtpmux/config.toml", "User=smtpmux", "StateDirectory=smtpmux", "NoNewPrivileges=yes", "ProtectSystem=strict"} {
		if !strings.Contains(unit, "\n"+want+"\n") {
			t.Errorf("packaged unit lacks %q", want)
		}
	}
	// Debian tools read the version from the changelog's top entry.
	zr, err := gzip.NewReader(bytes.NewReader(readFile(t, filepath.Join(root, "usr/share/doc/smtpmux/changelog.Debian.gz"))))
	if err != nil {
		t.Fatal(err)
	}
	if top, _ := bufio.NewReader(zr).ReadString('\n'); !strings.HasPrefix(top, "smtpmux (0.1.0~test-1) ") {
		t.Errorf("changelog starts %q, want the package version 0.1.0~test-1", top)
	}
	cfg := string(readFile(t, filepath.Join(root, "etc/smtpmux/config.toml")))
	if !strings.Contains(cfg, "\ndata_dir = \"/var/lib/smtpmux\"") {
		t.Errorf("packaged config does not keep its store in /var/lib/smtpmux:\n%s", cfg)
	}
}

// checkConfig runs the installed binary on the installed config. The
// config's paths point at /var/lib/smtpmux of the real system, which
// check-config does not touch: it validates, it does not open the store.
func checkConfig(t *testing.T, root string) {
	t.Helper()
	bin := filepath.Join(root, "usr/bin/smtpmux")
	out := runOK(t, exec.Command(bin, "check-config", "--config", filepath.Join(root, "etc/smtpmux/config.toml")))
	if strings.TrimSpace(out) != "config ok" {
		t.Errorf("check-config said %q", out)
	}
	if v := strings.TrimSpace(runOK(t, exec.Command(bin, "version"))); v != "smtpmux "+testVersion {
		t.Errorf("installed binary reports %q, want the stamped version %s", v, testVersion)
	}
}

// seedRoot makes the least a root needs for dpkg --root and useradd
// --prefix: an empty dpkg database and account files holding only root.
func seedRoot(t *testing.T, root string) {
	t.Helper()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{
		"var/lib/dpkg/status": "", "var/lib/dpkg/available": "",
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n", "etc/group": "root:x:0:\n",
		"etc/shadow": "root:*:19000:0:99999:7:::\n", "etc/gshadow": "root:*::\n",
	} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// assertStatic fails on a dynamically linked binary (one with an ELF
// interpreter): the package must run on any glibc or none.
func assertStatic(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		t.Errorf("%s is for %v, want x86-64", path, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked", path)
		}
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if fi.Mode() != want {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
	}
}

func assertOwned(t *testing.T, path string, mode os.FileMode, uid, gid int) {
	t.Helper()
	assertMode(t, path, mode)
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("%s: owner %d:%d, want %d:%d", path, st.Uid, st.Gid, uid, gid)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func runOK(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return string(out)
}

// requireTool finds a program the test cannot do without; missing, it
// fails under CI and skips elsewhere.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("%s is not on PATH", name)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

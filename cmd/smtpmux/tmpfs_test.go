package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// The disk-full tests need a small file system of their own: a tmpfs.
// Mounting one needs root, which an ordinary CI runner does not give a
// test. Without it, a test runs itself again in a child process inside a
// new user and mount namespace, where it is root and may mount a tmpfs
// that no one outside sees (what `unshare --user --map-root-user --mount`
// does). Where the kernel or a container refuses that, passwordless sudo
// (as GitHub's runners have) mounts one owned by the test's user; only
// where neither works does the test fail (skip outside CI) saying why.

// Environment of the child a test runs in inside its own namespaces.
const (
	envInUserNS = "SMTPMUX_TEST_IN_USERNS" // "1" in the child
	envTestBin  = "SMTPMUX_TEST_BIN"       // the binary TestMain built, reused by the child
	// noMountMarker tells the parent the child could not mount even as
	// root of its namespace (an AppArmor or seccomp rule can allow the
	// namespace but not the mount), so it should try sudo instead.
	noMountMarker = "smtpmux-test: no tmpfs mount in the user namespace"
)

// mountMode is how this test process gets its tmpfs mounts.
type mountMode int

const (
	mountDirect mountMode = iota // root here (or in our own namespace): mount(2)
	mountSudo                    // sudo -n mount, owned by our uid
)

// withMountPrivilege makes sure the calling test may mount a tmpfs. It
// returns the way to mount and true when the test should go on in this
// process; false when it has run the test in a child process inside its
// own namespaces and reported the outcome, and the caller must return.
func withMountPrivilege(t *testing.T) (mountMode, bool) {
	t.Helper()
	if os.Geteuid() == 0 {
		return mountDirect, true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), envInUserNS+"=1", envTestBin+"="+binPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		GidMappingsEnableSetgroups: false,
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exitErr *exec.ExitError
	ran := err == nil || errors.As(err, &exitErr)
	if ran && !strings.Contains(out.String(), noMountMarker) {
		if err != nil {
			t.Fatalf("failed in its own user and mount namespace: %v\n%s", err, out.Bytes())
		}
		t.Logf("ran as root of its own user and mount namespace:\n%s", out.Bytes())
		return 0, false
	}
	why := fmt.Sprintf("no user and mount namespace (%v)", err)
	if ran {
		why = "the user namespace may not mount a tmpfs"
	}
	if exec.Command("sudo", "-n", "true").Run() == nil {
		t.Logf("%s; mounting with sudo", why)
		return mountSudo, true
	}
	failNoMount(t, fmt.Sprintf("not root, %s, and no passwordless sudo", why))
	return 0, false
}

// failNoMount ends a test that cannot mount: a skip, except under CI=true,
// where a suite that silently tests less must not pass (as requirePeer).
func failNoMount(t *testing.T, why string) {
	t.Helper()
	msg := "the disk-full tests need a tmpfs of their own: " + why
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// mountTmpfs mounts a tmpfs of sizeMiB on dir (which must exist) and
// unmounts it at cleanup, lazily if something still holds it.
func mountTmpfs(t *testing.T, mode mountMode, dir string, sizeMiB int) {
	t.Helper()
	if mode == mountSudo {
		opts := fmt.Sprintf("size=%dm,mode=0700,uid=%d,gid=%d", sizeMiB, os.Getuid(), os.Getgid())
		if out, err := exec.Command("sudo", "-n", "mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
			failNoMount(t, fmt.Sprintf("sudo mount on %s: %v: %s", dir, err, bytes.TrimSpace(out)))
		}
		t.Cleanup(func() {
			if out, err := exec.Command("sudo", "-n", "umount", dir).CombinedOutput(); err != nil {
				t.Logf("umount %s: %v: %s; detaching it lazily", dir, err, bytes.TrimSpace(out))
				exec.Command("sudo", "-n", "umount", "-l", dir).Run()
			}
		})
		return
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%dm,mode=0700", sizeMiB)); err != nil {
		if os.Getenv(envInUserNS) == "1" {
			fmt.Println(noMountMarker)
		}
		failNoMount(t, fmt.Sprintf("mount a %d MiB tmpfs on %s: %v", sizeMiB, dir, err))
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Logf("umount %s: %v; detaching it lazily", dir, err)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
}

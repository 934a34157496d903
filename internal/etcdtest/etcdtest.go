// Package etcdtest starts real etcd members as processes for tests: the
// cluster-mode tests run against etcd itself, never an imitation of it.
//
// The binary is the one scripts/install-test-peers.sh builds from etcd's Go
// module at a pinned version into .peers/bin/etcd (SMTPMUX_ETCD overrides
// the path). Without it a test skips, except under CI=true, where a missing
// peer is a failure: a skipped cluster test must never look like a pass.
package etcdtest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Binary returns the etcd binary's path, skipping (or failing under CI)
// when it is not installed.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("SMTPMUX_ETCD"); p != "" {
		return p
	}
	if root := repoRoot(); root != "" {
		p := filepath.Join(root, ".peers", "bin", "etcd")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	msg := "etcd not installed: run ./scripts/install-test-peers.sh (or set SMTPMUX_ETCD)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// repoRoot walks up from the working directory to the module's go.mod.
func repoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/smtpmux/smtpmux")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Member is one etcd process of a Cluster.
type Member struct {
	Name      string
	ClientURL string
	peerURL   string
	dataDir   string
	logPath   string
	cmd       *exec.Cmd
	exited    chan struct{}
}

// Cluster is a set of etcd members started together; they are stopped when
// the test ends.
type Cluster struct {
	t       testing.TB
	bin     string
	initial string
	Members []*Member
}

// Start starts an n-member cluster on 127.0.0.1 and waits until every
// member answers /health.
//
// The members' ports are picked free and released before etcd binds them;
// with many tests starting clusters and dialling at once, another socket
// sometimes takes one in between: a cluster whose member then cannot
// bind is stopped and started again on other ports (three tries).
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	for try := 1; ; try++ {
		c := startOnce(t, n)
		if c.bindFailed() == "" {
			for i := range c.Members {
				c.WaitHealthy(i)
			}
			return c
		}
		c.StopAll()
		if try == 3 {
			t.Fatalf("etcd member could not bind its port three times:\n%s", c.bindFailed())
		}
	}
}

// bindFailed waits until every member is either answering or has exited,
// and returns the log of one that exited because its port was taken.
func (c *Cluster) bindFailed() string {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for _, m := range c.Members {
		for time.Now().Before(deadline) {
			select {
			case <-m.exited:
				log, _ := os.ReadFile(m.logPath)
				if bytes.Contains(log, []byte("address already in use")) {
					return tail(log)
				}
				return "" // another failure: WaitHealthy reports it
			default:
			}
			// Listening: /health answers (healthy or not, the port is
			// this member's).
			if resp, err := client.Get(m.ClientURL + "/health"); err == nil {
				resp.Body.Close()
				break
			}
			time.Sleep(50 * time.Millisecond) // poll interval, bounded by the deadline
		}
	}
	return ""
}

func startOnce(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, bin: Binary(t)}
	dir := t.TempDir()
	var initial []string
	// Every listener stays open until all 2n ports are picked: the kernel
	// hands a just-released port out again, and two members given the same
	// peer URL make etcd refuse the cluster ("has duplicate url").
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	pick := func() string {
		l := freeListener(t)
		held = append(held, l)
		return l.Addr().String()
	}
	for i := 0; i < n; i++ {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: "http://" + pick(),
			peerURL:   "http://" + pick(),
			dataDir:   filepath.Join(dir, fmt.Sprintf("m%d", i)),
			logPath:   filepath.Join(dir, fmt.Sprintf("m%d.log", i)),
		}
		initial = append(initial, m.Name+"="+m.peerURL)
		c.Members = append(c.Members, m)
	}
	c.initial = strings.Join(initial, ",")
	for i := range c.Members {
		c.StartMember(i)
	}
	t.Cleanup(c.StopAll)
	return c
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// StartMember (re)starts member i on its data directory.
func (c *Cluster) StartMember(i int) {
	c.t.Helper()
	m := c.Members[i]
	if m.cmd != nil {
		c.t.Fatalf("etcd member %s already running", m.Name)
	}
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(c.bin,
		"--name", m.Name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.ClientURL,
		"--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", m.peerURL,
		"--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster", c.initial,
		"--initial-cluster-state", "new",
		"--initial-cluster-token", "smtpmux-test",
		// Short timings keep leader election well under a second on a
		// loaded 2-core test machine without flapping.
		"--heartbeat-interval", "50",
		"--election-timeout", "500",
		"--log-level", "warn",
	)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("start etcd %s: %v", m.Name, err)
	}
	m.cmd = cmd
	m.exited = make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(m.exited)
	}()
}

// StopMember kills member i (SIGKILL: what a crashed machine does) and
// waits for it to exit.
func (c *Cluster) StopMember(i int) {
	m := c.Members[i]
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Kill()
	<-m.exited
	m.cmd = nil
}

// PauseAll freezes every member with SIGSTOP: the processes keep their
// sockets, so clients connect and send but get no answer, as with a
// network that drops packets or a machine that hangs — a harsher outage
// than a refused connection. ResumeAll (or the test's end) thaws them.
func (c *Cluster) PauseAll() {
	c.t.Helper()
	c.signalAll(syscall.SIGSTOP)
}

// ResumeAll thaws every member frozen by PauseAll (SIGCONT) and waits
// until each is healthy again.
func (c *Cluster) ResumeAll() {
	c.t.Helper()
	c.signalAll(syscall.SIGCONT)
	for i := range c.Members {
		c.WaitHealthy(i)
	}
}

func (c *Cluster) signalAll(sig syscall.Signal) {
	c.t.Helper()
	for _, m := range c.Members {
		if m.cmd == nil {
			c.t.Fatalf("etcd member %s is not running", m.Name)
		}
		if err := m.cmd.Process.Signal(sig); err != nil {
			c.t.Fatalf("etcd member %s: %v: %v", m.Name, sig, err)
		}
	}
}

// StopAll stops every member.
func (c *Cluster) StopAll() {
	for i := range c.Members {
		c.StopMember(i)
	}
}

// StartAll restarts every stopped member and waits until each is healthy.
func (c *Cluster) StartAll() {
	c.t.Helper()
	for i, m := range c.Members {
		if m.cmd == nil {
			c.StartMember(i)
		}
	}
	for i := range c.Members {
		c.WaitHealthy(i)
	}
}

// WaitHealthy waits (up to 30 s) until member i reports healthy, which
// needs a quorum with a leader.
func (c *Cluster) WaitHealthy(i int) {
	c.t.Helper()
	m := c.Members[i]
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(m.ClientURL + "/health")
		if err == nil {
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && bytes.Contains(b.Bytes(), []byte(`"health":"true"`)) {
				return
			}
		}
		select {
		case <-m.exited:
			log, _ := os.ReadFile(m.logPath)
			c.t.Fatalf("etcd %s exited before it was healthy:\n%s", m.Name, tail(log))
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(m.logPath)
			c.t.Fatalf("etcd %s not healthy after 30s (last error %v):\n%s", m.Name, err, tail(log))
		}
		time.Sleep(50 * time.Millisecond) // poll interval, bounded by the deadline above
	}
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// freeListener holds a free 127.0.0.1 port. The caller releases it
// before etcd binds the port; Start retries a cluster whose member lost
// its port to another socket in between.
func freeListener(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

package main

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// TestSystemdNotifyReadyzAndMetrics runs the daemon as systemd would
// (NOTIFY_SOCKET set) and checks readiness, the metrics endpoint and the
// stop notification.
func TestSystemdNotifyReadyzAndMetrics(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	notes := make(chan string, 10)
	go func() {
		buf := make([]byte, 256)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			notes <- string(buf[:n])
		}
	}()
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemonEnv(t, nil, []string{"NOTIFY_SOCKET=" + sock})
	expectNote(t, notes, "READY=1")

	resp, err := http.Get("http://" + d.httpAddr + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	resp.Body.Close()

	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	c := d.client(key)
	if _, err := sendOne(c, "a@example.com", []string{"b@example.net"}, msgBody("metrics")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	up.WaitMessages(t, 1, 10*time.Second)
	var body string
	for i := 0; i < 50; i++ { // the attempt's result is recorded just after the upstream's 250
		resp, err = http.Get("http://" + d.httpAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		if strings.Contains(body, `outcome="sent"`) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{"smtpmux_messages_accepted_total 1", "smtpmux_smtp_sessions_total",
		`smtpmux_queue_messages{state="queued"}`, `smtpmux_delivery_attempts_total{outcome="sent"`,
		"smtpmux_store_commits_total", "smtpmux_provider_pulled", "smtpmux_delivery_attempt_seconds_bucket"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, "b@example.net") {
		t.Error("/metrics must not carry recipient addresses")
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	expectNote(t, notes, "STOPPING=1")
}

func expectNote(t *testing.T, notes <-chan string, want string) {
	t.Helper()
	select {
	case n := <-notes:
		if n != want {
			t.Fatalf("notify socket got %q, want %q", n, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s on the notify socket", want)
	}
}

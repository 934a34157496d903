package main

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

// A long start (a migration over a large store) keeps asking systemd for
// more time, three intervals at a time, and stops asking once started.
func TestSdExtendStartAsksForTimeUntilStarted(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { sdExtendStart(stop, 5*time.Millisecond); close(done) }()
	buf := make([]byte, 128)
	for i := 0; i < 2; i++ {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := conn.ReadFromUnix(buf)
		if err != nil {
			t.Fatalf("note %d: %v", i, err)
		}
		if got := string(buf[:n]); got != "EXTEND_TIMEOUT_USEC=15000" {
			t.Fatalf("note %d = %q", i, got)
		}
	}
	close(stop)
	<-done // it returns once started (a hang here fails the test by timeout)
}

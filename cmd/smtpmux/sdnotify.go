package main

import (
	"net"
	"os"
	"strconv"
	"time"
)

// sdNotify sends a state line to systemd's notify socket (Type=notify).
// Without NOTIFY_SOCKET (not run by systemd) it does nothing.
func sdNotify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	conn.Write([]byte(state))
}

// sdWatchdog pings systemd at half the WatchdogSec interval until stop is
// closed. The ping is only sent while check (the daemon's readiness)
// passes, so a wedged daemon gets restarted.
func sdWatchdog(stop <-chan struct{}, check func() error) {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return
	}
	t := time.NewTicker(time.Duration(usec) * time.Microsecond / 2)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if check() == nil {
				sdNotify("WATCHDOG=1")
			}
		}
	}
}

// startKeepalive is how often a starting daemon tells systemd it is still
// starting. Start can take longer than TimeoutStartSec (90 s by default):
// a schema migration over a large store commits in batches for minutes,
// and killing it only makes the next start resume it.
const startKeepalive = 10 * time.Second

// sdExtendStart asks systemd for more start time every interval until
// stop is closed, each time for three intervals. It extends for as long
// as start runs, so it relies on every step of start being bounded on
// its own (the bbolt open's lock timeout, the cluster join's deadline)
// or making progress (a migration's batches); a daemon that dies stops
// extending and systemd's timeout applies again.
func sdExtendStart(stop <-chan struct{}, interval time.Duration) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return
	}
	note := "EXTEND_TIMEOUT_USEC=" + strconv.FormatInt((3*interval).Microseconds(), 10)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			sdNotify(note)
		}
	}
}

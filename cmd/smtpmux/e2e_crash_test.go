package main

import (
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

var (
	midRe      = regexp.MustCompile(`(?m)^Message-ID: <([^>]+)>`)
	requeuedRe = regexp.MustCompile(`"msg":"requeued attempts interrupted by the last stop","count":(\d+)`)
)

// TestKill9UnderLoadLosesNothing sends 500 messages over 20 concurrent
// sessions, kills the daemon with SIGKILL mid-stream, restarts it, and
// checks that every message that got a 250 reaches the upstream. The
// clients retry what was cut off before its 250, as real senders do.
func TestKill9UnderLoadLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test is long")
	}
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, nil)
	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})

	const sessions, perSession = 20, 25
	var (
		accepted  sync.Map // Message-ID → eml id
		resent    sync.Map // Message-IDs the client sent again after an error
		nAccepted atomic.Int64
		restarted = make(chan struct{})
		killOnce  sync.Once
		killed    = make(chan struct{})
		wg        sync.WaitGroup
	)
	for s := 0; s < sessions; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			var c *smtp.Client
			for i := 0; i < perSession; i++ {
				mid := fmt.Sprintf("crash-%d-%d@example.com", s, i)
				body := crlf(fmt.Sprintf("From: app@example.com\nTo: u@example.net\nSubject: crash %d/%d\nMessage-ID: <%s>\n\nbody %d %d\n", s, i, mid, s, i))
				for try := 0; ; try++ {
					if try > 200 {
						t.Errorf("message %s never accepted", mid)
						return
					}
					if c == nil {
						select {
						case <-killed:
							<-restarted // the daemon is down: wait for it
						default:
						}
						var err error
						if c, err = dialQuiet(d, key); err != nil {
							c = nil
							time.Sleep(20 * time.Millisecond)
							continue
						}
					}
					id, err := sendOne(c, "app@example.com", []string{"u@example.net"}, body)
					if err != nil {
						// The relay may have stored this try and died before
						// its 250 reached us: our resend is then a second
						// message with the same Message-ID, the client's doing.
						resent.Store(mid, true)
						c.Close()
						c = nil
						continue
					}
					accepted.Store(mid, id)
					if nAccepted.Add(1) == 150 {
						killOnce.Do(func() { d.kill9(); close(killed) })
					}
					break
				}
			}
			if c != nil {
				c.Quit()
			}
		}(s)
	}
	<-killed
	d.start()
	close(restarted)
	wg.Wait()

	total := sessions * perSession
	if n := int(nAccepted.Load()); n != total {
		t.Fatalf("accepted %d of %d", n, total)
	}
	// Wait until every accepted message reached the upstream or was
	// flagged uncertain (counting the log's flags would also count a
	// message whose client resend was delivered, and stop too early).
	deadline := time.Now().Add(60 * time.Second)
	var seen map[string]int
	var missing int
	flagged := map[string]bool{} // final: asked once each
	for {
		seen = map[string]int{}
		for _, m := range up.Messages() {
			if mm := midRe.FindSubmatch(m.Data); mm != nil {
				seen[string(mm[1])]++
			}
		}
		missing = 0
		accepted.Range(func(k, v any) bool {
			if seen[k.(string)] > 0 || flagged[k.(string)] {
				return true
			}
			// Not delivered: only acceptable if the relay flagged it uncertain
			// (the kill fell after its body was handed to the upstream).
			if e := d.email(v.(string)); e["status"] == "failed" && e["reason"] == "uncertain" {
				flagged[k.(string)] = true
			} else {
				missing++
			}
			return true
		})
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	uncertain := len(flagged)
	dups, clientDups := 0, 0
	for mid, n := range seen {
		if _, again := resent.Load(mid); again {
			clientDups += n - 1
			continue
		}
		dups += n - 1
	}
	requeued := 0
	if m := requeuedRe.FindStringSubmatch(d.logText()); m != nil {
		requeued, _ = strconv.Atoi(m[1])
	}
	t.Logf("kill -9 after 150 accepted: %d/%d delivered, %d flagged uncertain, %d lost, %d duplicates by the relay, "+
		"%d by client resends, %d attempts in flight at the kill", len(seen), total, uncertain, missing, dups, clientDups, requeued)
	if missing > 0 {
		t.Fatalf("%d messages that got 250 were neither delivered nor flagged", missing)
	}
	if dups > 0 {
		t.Fatalf("%d duplicates: an attempt whose body reached the upstream was sent again", dups)
	}
}

// dialQuiet is client() without failing the test, for reconnect loops.
func dialQuiet(d *proc, key string) (*smtp.Client, error) {
	c, err := smtp.DialStartTLS(d.smtpAddr, insecureTLS())
	if err != nil {
		return nil, err
	}
	if err := c.Auth(plain(key)); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

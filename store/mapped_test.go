package store

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// mappedRSS returns how many KiB of path's memory map are resident in
// this process (from /proc/self/smaps).
func mappedRSS(t *testing.T, path string) int {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no /proc/self/smaps under CI: residency cannot be checked:", err)
		}
		t.Skip("no /proc/self/smaps:", err)
	}
	defer f.Close()
	total, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = len(fields) >= 6 && fields[5] == path
			continue
		}
		if in && len(fields) >= 2 && fields[0] == "Rss:" {
			n, _ := strconv.Atoi(fields[1])
			total += n
		}
	}
	return total
}

var touchSink byte

// TestBodiesDoNotStayResident reads 200 bodies of 100 KiB and checks that
// the store's memory map does not keep them resident: Body reads them from
// the file, and the committer drops what lookups and commits mapped (a
// lookup maps the body's first page and the kernel the pages around that
// fault; a commit rewriting a leaf reads its values).
func TestBodiesDoNotStayResident(t *testing.T) {
	s, path := openTest(t)
	body := bytes.Repeat([]byte("0123456789abcdef"), 100<<10/16)
	var ids []string
	for i := 0; i < 200; i++ {
		m := &Message{ID: fmt.Sprintf("eml_%04d", i), NextAttemptAt: time.Now()}
		if err := s.Enqueue(m, body); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	before := mappedRSS(t, path)
	for _, id := range ids {
		got, err := s.Body(id)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("body %s: %d bytes, %v", id, len(got), err)
		}
	}
	afterReads := mappedRSS(t, path)
	// Touch every page of the map, as a commit rewriting leaves does.
	s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bBodies).ForEach(func(k, _ []byte) error {
			v := getBody(tx, string(k)) // either layout (body_bucket.go)
			for i := 0; i < len(v); i += 4096 {
				touchSink += v[i]
			}
			return nil
		})
	})
	touched := mappedRSS(t, path)
	// The committer trims after a commit, at most every trimEvery: make
	// one after that long and wait for the trim that follows its reply.
	time.Sleep(trimEvery + 10*time.Millisecond)
	if err := s.Enqueue(&Message{ID: "eml_trigger", NextAttemptAt: time.Now()}, []byte("x")); err != nil {
		t.Fatal(err)
	}
	trimmed := mappedRSS(t, path)
	for deadline := time.Now().Add(2 * time.Second); trimmed > 1<<10 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		trimmed = mappedRSS(t, path)
	}
	t.Logf("resident KiB of the map: before reads %d, after Body reads %d, all touched %d, after trim %d", before, afterReads, touched, trimmed)
	if touched < 10<<10 {
		t.Fatalf("touching every body made only %d KiB resident: the measure is broken", touched)
	}
	if trimmed > 1<<10 {
		t.Errorf("after the committer's trim %d KiB of the map stay resident", trimmed)
	}
}

// TestSmallMapResidencyIsKept: commits that leave little of the map
// resident do not drop it. Dropping it at every look made each commit
// fault the same hot pages back in (6–7 % of the relay's CPU, issue 19);
// TestBodiesDoNotStayResident checks that a large residency still goes.
func TestSmallMapResidencyIsKept(t *testing.T) {
	if _, ok := fileRSS(); !ok {
		if os.Getenv("CI") == "true" {
			t.Fatal("no /proc/self/statm under CI: the map-trim rule cannot be checked")
		}
		t.Skip("no /proc/self/statm: the map is dropped at every look there")
	}
	s, _ := openTest(t)
	// The first commit after Open may look at once (lastTrim is zero);
	// the second one's reply comes after the first one's look.
	for i := 0; i < 2; i++ {
		if err := s.Enqueue(&Message{ID: fmt.Sprintf("eml_%d", i), NextAttemptAt: time.Now()}, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.mapTrims.Load(); n != 0 {
		t.Errorf("two small commits dropped the map %d times, want 0", n)
	}
}

// TestLargeBodyReadsDropNoPages: a delivery's copy of a 100 KiB inline
// body is read from the file (pread), not through the memory map, so
// there is nothing to drop from the map after each read. Copying through
// the map and dropping the body's pages after every read (MADV_DONTNEED)
// was 18 % of the relay's CPU at 100 KiB per message (issue 19); the
// committer's trim bounds what reads leave mapped (the fault-around
// window of a body's first page, TestBodiesDoNotStayResident).
func TestLargeBodyReadsDropNoPages(t *testing.T) {
	s, _ := openTest(t)
	body := bytes.Repeat([]byte("0123456789abcdef"), 100<<10/16)
	body[len(body)/2] = '!' // a byte in the middle, to check the copy
	var ids []string
	for i := 0; i < 20; i++ {
		m := &Message{ID: fmt.Sprintf("eml_%04d", i), NextAttemptAt: time.Now()}
		if err := s.Enqueue(m, body); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	var drops atomic.Int64
	orig := dropPages
	dropPages = func(b []byte) { drops.Add(1); orig(b) }
	defer func() { dropPages = orig }()
	for _, id := range ids {
		got, err := s.Body(id)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("body %s: %d bytes, %v", id, len(got), err)
		}
		b, err := s.OpenBody(&Message{ID: id})
		if err != nil || !bytes.Equal(b.Bytes(), body) {
			t.Fatalf("OpenBody %s: %v", id, err)
		}
		b.Release()
	}
	if n := drops.Load(); n != 0 {
		t.Errorf("reading %d bodies dropped map pages %d times, want 0", 2*len(ids), n)
	}
}

package store

import (
	"slices"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	bolt "go.etcd.io/bbolt"
)

// TestMoverSlicesWhileWritesFlow: the mover's commit leaves the rest of
// its chunk to the next one after its slice whenever other writes flow
// (a commit carried one within flowWindow), even if none waits at that
// moment; while none flows it deletes on (an idle daemon moves fast).
func TestMoverSlicesWhileWritesFlow(t *testing.T) {
	s, _ := openTest(t)
	past := time.Now().Add(-time.Second) // its slice is over
	if s.writesFlowing() || moverYield(s, past) {
		t.Fatal("a store nothing was written to counts as busy")
	}
	// The mover's own and lazy writes are not a flow.
	if err := s.moverUpdate(func(*bolt.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if s.writesFlowing() {
		t.Fatal("the mover's own commit counts as other writes flowing")
	}
	w0 := flowWindow
	flowWindow = time.Hour // no timing in the test
	t.Cleanup(func() { flowWindow = w0 })
	flowWrites(t, s)
	if !s.writesFlowing() || !moverYield(s, past) {
		t.Fatal("after another write the mover does not keep to its slice")
	}
	if moverYield(s, time.Now().Add(time.Hour)) {
		t.Fatal("the mover yields before its slice is over")
	}
	flowWindow = 0
	if s.writesFlowing() || moverYield(s, past) {
		t.Fatal("writes count as flowing after flowWindow")
	}
}

// TestPacedMoveReadsInBursts: a step whose bursts end after every record
// (its list read in a read transaction per record, a pause between
// records and between the day file's keys) moves the same records as an
// unpaced one: every finished record once, a second list entry of one
// record dropped, the files consistent and every history read the same.
// While no other write flows it never pauses.
func TestPacedMoveReadsInBursts(t *testing.T) {
	b0, w0 := moverBurst, flowWindow
	t.Cleanup(func() { moverBurst, flowWindow = b0, w0 })
	moverBurst = 0

	s, _ := openTest(t)
	teams := historyFixture(t, s, histNow)
	edgeMessages(t, s, teams)
	ids, done := mainIDs(s)
	before := histSnapshot(t, s, teams, ids)
	// A second list entry of a finished record: stale, read in its own
	// burst like the others.
	if err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bFinished).Put(finishedKey(histNow.Add(-time.Hour), ids[0]), nil)
	}); err != nil {
		t.Fatal(err)
	}

	listed := func() (keys []string) {
		s.view(func(tx *bolt.Tx) error {
			return tx.Bucket(bFinished).ForEach(func(k, _ []byte) error {
				keys = append(keys, string(k))
				return nil
			})
		})
		return keys
	}

	flowWindow = 0 // nothing flows: no pause
	quiet := newMoverPacer(s)
	list0 := listed()
	total, _, err := s.moveHistory(histNow.Add(time.Hour), 16, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if quiet.pauses != 0 {
		t.Fatalf("%d pauses while no other write flows", quiet.pauses)
	}
	// The fixture lists many records that are not finished (stale
	// entries, dropped as they are read): each step takes 16 entries.
	if left := listed(); !slices.Equal(left, list0[16:]) {
		t.Fatalf("the first step left %d entries, not the list's tail after 16", len(left))
	}

	flowWindow = time.Hour
	flowWrites(t, s)
	pauses := 0
	for step := 1; ; step++ {
		p := newMoverPacer(s)
		n, more, err := s.moveHistory(histNow.Add(time.Hour), 16, p)
		if err != nil {
			t.Fatal(err)
		}
		total, pauses = total+n, pauses+p.pauses
		// Oldest first across its bursts: what is left is the list
		// but the first 16 entries of each step.
		if left := listed(); more && !slices.Equal(left, list0[16*(step+1):]) {
			t.Fatalf("step %d left %d entries, not the list's tail after %d", step, len(left), 16*(step+1))
		}
		if !more {
			break
		}
	}
	if total != done {
		t.Fatalf("moved %d of %d", total, done)
	}
	inMain, inDays := checkFiles(t, s)
	if _, left := mainIDs(s); left != 0 || inDays != done || inMain != len(ids)-done {
		t.Fatalf("paced: %d finished left in main, %d in day files (want %d), %d in main", left, inDays, done, inMain)
	}
	if pauses < done {
		t.Fatalf("%d pauses for %d records whose every burst ended", pauses, done)
	}
	if got := histSnapshot(t, s, teams, ids); got != before {
		t.Fatalf("after paced moves, the reads differ:\n%s", firstDiff(before, got))
	}
	s.view(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bFinished).Stats().KeyN; n != 0 {
			t.Fatalf("%d list entries left", n)
		}
		return nil
	})
}

// TestWriteDaysChargesWorkNotPauses: the day-file writes' pauses are not
// charged to the step as work (the rest after it would count them
// again).
func TestWriteDaysChargesWorkNotPauses(t *testing.T) {
	b0, w0 := moverBurst, flowWindow
	t.Cleanup(func() { moverBurst, flowWindow = b0, w0 })
	moverBurst, flowWindow = 20*time.Millisecond, time.Hour
	s, _ := openTest(t)
	flowWrites(t, s)
	var ms []*moving
	for i := range 3 {
		at := histNow.Add(-time.Duration(i) * time.Minute)
		m := Message{ID: NewIDAt(PrefixMessage, at), TeamID: "team_a", State: StateDone, Status: state.MessageSent,
			Recipients: []Recipient{{Address: "a@example.net", Status: state.MessageSent}}, CreatedAt: at, UpdatedAt: at}
		raw, err := encodeMessage(&m)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, &moving{raw: raw, m: m})
	}
	p := newMoverPacer(s)
	p.start = time.Now().Add(-time.Hour) // the burst is over: the first record pauses
	s.moverBusy.Store(0)
	t0 := time.Now()
	if err := s.writeDays(ms, p); err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	if p.pauses == 0 {
		t.Fatal("no pause")
	}
	if busy := time.Duration(s.moverBusy.Load()); busy > took-p.rests {
		t.Fatalf("charged %v of %v, of which %v were pauses", busy, took, p.rests)
	}
}

// flowWrites commits another write: writes count as flowing once it
// returns.
func flowWrites(t *testing.T, s *Store) {
	t.Helper()
	if err := s.update(func(*bolt.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

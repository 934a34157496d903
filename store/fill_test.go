package store

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestAppendBucketsPacked: the pages of buckets whose keys only arrive in
// ascending order end up nearly full (appendFill), where bbolt's default
// split left them half empty (0.49–0.50 measured, store/fill.go).
func TestAppendBucketsPacked(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now().UTC()
	var wg sync.WaitGroup
	var seq atomic.Int64 // due times ascending across the writers, as "now" is for new mail
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ { // concurrent, so that commits group several
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 400; i++ {
				m := newMsg(now.Add(time.Duration(seq.Add(1)) * time.Millisecond))
				if err := s.Enqueue(m, []byte("Subject: hi\r\n\r\nbody\r\n")); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s.view(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bMsgByTeam, bDue, bMsgByFilter} {
			st := tx.Bucket(name).Stats()
			if st.KeyN < 3200 || st.LeafPageN < 4 {
				t.Fatalf("%s: %d keys on %d leaf pages: the test wrote too little to fill pages", name, st.KeyN, st.LeafPageN)
			}
			// The last page of each bucket (and of each team's range)
			// may be partly empty: the rest must be about full.
			fill := float64(st.LeafInuse) / float64(st.LeafPageN*4096)
			if fill < 0.8 {
				t.Errorf("%s: leaf pages %.0f %% full (%d keys, %d pages), want ≥ 80 %%", name, 100*fill, st.KeyN, st.LeafPageN)
			}
		}
		return nil
	})
}

package bbolt

import (
	"encoding/binary"
	"path/filepath"
	"runtime"
	"testing"
)

// TestSeekAllocations: Get, Put and Delete reuse the transaction's seek
// cursor (smtpmux patch, PATCHES.md 1) instead of growing a new cursor
// stack per call. The tree is three levels deep, so upstream's stack took
// at least one allocation per seek.
func TestSeekAllocations(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	name := []byte("b")
	key := func(i int) []byte { return binary.BigEndian.AppendUint64(nil, uint64(i)) }
	const n = 50000
	if err := db.Update(func(tx *Tx) error {
		b, err := tx.CreateBucket(name)
		if err != nil {
			return err
		}
		for i := range n {
			if err := b.Put(key(i), make([]byte, 32)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	k, missing, val := key(n/2), key(n+1), make([]byte, 32)

	if err := db.View(func(tx *Tx) error {
		b := tx.Bucket(name)
		if got := b.Stats().Depth; got < 3 {
			t.Fatalf("tree depth %d, want at least 3", got)
		}
		if a := testing.AllocsPerRun(100, func() { b.Get(k) }); a != 0 {
			t.Errorf("Get in a read transaction: %v allocations, want 0", a)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// A new transaction's first seeks allocate nothing either: the
	// stack starts in the Tx.
	tx, err := db.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	b := tx.Bucket(name)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.Get(k) // once: AllocsPerRun's warm-up call would be the first
	runtime.ReadMemStats(&m1)
	if a := m1.Mallocs - m0.Mallocs; a != 0 {
		t.Errorf("the first Get of a transaction: %v allocations, want 0", a)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}

	if err := db.Update(func(tx *Tx) error {
		b := tx.Bucket(name)
		if err := b.Put(k, val); err != nil { // the first Put reads the path into nodes
			return err
		}
		if a := testing.AllocsPerRun(100, func() { b.Get(k) }); a != 0 {
			t.Errorf("Get in a write transaction: %v allocations, want 0", a)
		}
		// Put copies the key (one allocation); overwriting a key of a
		// node already read takes nothing more.
		if a := testing.AllocsPerRun(100, func() { _ = b.Put(k, val) }); a != 1 {
			t.Errorf("Put: %v allocations, want 1 (the key's copy)", a)
		}
		if a := testing.AllocsPerRun(100, func() { _ = b.Delete(missing) }); a != 0 {
			t.Errorf("Delete of a missing key: %v allocations, want 0", a)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestSeekCursorLeavesUserCursors: the shared seek cursor is not the one
// Bucket.Cursor returns, so Get, Put and Delete between a cursor's moves
// do not move it.
func TestSeekCursorLeavesUserCursors(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *Tx) error {
		b, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		for _, k := range []string{"a", "c", "e", "g"} {
			if err := b.Put([]byte(k), []byte(k)); err != nil {
				return err
			}
		}
		c := b.Cursor()
		var seen []string
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			seen = append(seen, string(k))
			b.Get([]byte("g"))
			if string(k) == "c" {
				if err := b.Put([]byte("c"), []byte("C")); err != nil {
					return err
				}
			}
			if err := b.Delete([]byte("zzz")); err != nil {
				return err
			}
		}
		if got := string(b.Get([]byte("c"))); got != "C" {
			t.Errorf("Get(c) = %q after the Put", got)
		}
		if len(seen) != 4 || seen[0] != "a" || seen[3] != "g" {
			t.Errorf("cursor saw %q, want a c e g", seen)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestInsertAllocations: inserting a key into a node just read from its
// page does not grow the node's inode slice (smtpmux patch, PATCHES.md 2):
// a new key costs what overwriting one does.
func TestInsertAllocations(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	name := []byte("b")
	key := func(i int) []byte { return binary.BigEndian.AppendUint64(nil, uint64(i)) }
	if err := db.Update(func(tx *Tx) error {
		b, err := tx.CreateBucket(name)
		if err != nil {
			return err
		}
		for i := 0; i < 20000; i += 2 { // even keys: an odd one lands among them
			if err := b.Put(key(i), make([]byte, 16)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// allocs is what one Put of k costs in a new transaction, where it
	// reads its path of nodes from the pages first.
	allocs := func(k []byte) uint64 {
		tx, err := db.Begin(true)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback() }()
		b := tx.Bucket(name)
		val := make([]byte, 16)
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		if err := b.Put(k, val); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&m1)
		return m1.Mallocs - m0.Mallocs
	}
	overwrite, insert := allocs(key(10000)), allocs(key(10001))
	if insert != overwrite {
		t.Errorf("Put of a new key: %d allocations, of an existing one %d: want the same", insert, overwrite)
	}
}

// TestMultiPageNodes: with FillPercent above 1 (smtpmux patch, PATCHES.md
// 3), values of about half a page fill nodes of several pages instead of
// two values per two pages, and the tree stays consistent (tx.Check)
// through appends, overwrites and deletes.
func TestMultiPageNodes(t *testing.T) {
	usage := func(fill float64) (pages int, fillRatio float64) {
		db, err := Open(filepath.Join(t.TempDir(), "db"), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		name := []byte("bodies")
		val := func(i int) []byte {
			v := make([]byte, 2100) // a 2 KiB body and its headers
			binary.BigEndian.PutUint64(v, uint64(i))
			return v
		}
		key := func(i int) []byte { return binary.BigEndian.AppendUint64(nil, uint64(i)) }
		const n, perCommit = 600, 5
		for c := 0; c < n/perCommit; c++ { // appends, a few per commit
			if err := db.Update(func(tx *Tx) error {
				b, err := tx.CreateBucketIfNotExists(name)
				if err != nil {
					return err
				}
				b.FillPercent = fill
				for i := c * perCommit; i < (c+1)*perCommit; i++ {
					if err := b.Put(key(i), val(i)); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		db.View(func(tx *Tx) error {
			st := tx.Bucket(name).Stats()
			pages = st.LeafPageN + st.LeafOverflowN
			fillRatio = float64(st.LeafInuse) / float64(pages*db.pageSize)
			return nil
		})
		// Overwrites and deletes in the middle and at the start, as the
		// retention sweep and rewrites do.
		if err := db.Update(func(tx *Tx) error {
			b := tx.Bucket(name)
			b.FillPercent = fill
			for i := 0; i < n; i += 7 {
				if err := b.Delete(key(i)); err != nil {
					return err
				}
			}
			for i := 3; i < n; i += 11 {
				if i%7 != 0 {
					if err := b.Put(key(i), append(val(i), make([]byte, 500)...)); err != nil {
						return err
					}
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := db.View(func(tx *Tx) error {
			for err := range tx.Check() {
				t.Errorf("fill %v: %v", fill, err)
			}
			b := tx.Bucket(name)
			for i := 0; i < n; i++ {
				v := b.Get(key(i))
				switch {
				case i%7 == 0 && v != nil:
					t.Errorf("fill %v: key %d deleted but read", fill, i)
				case i%7 != 0 && (len(v) < 2100 || binary.BigEndian.Uint64(v) != uint64(i)):
					t.Errorf("fill %v: key %d reads %d bytes", fill, i, len(v))
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return pages, fillRatio
	}
	halfPages, halfFill := usage(1.0)
	multiPages, multiFill := usage(4.0)
	t.Logf("appended: FillPercent 1: %d leaf pages, %.0f %% full; 4: %d, %.0f %%", halfPages, 100*halfFill, multiPages, 100*multiFill)
	if halfFill > 0.6 {
		t.Errorf("FillPercent 1 fills %.0f %%: the test no longer shows the half-empty nodes", 100*halfFill)
	}
	if multiFill < 0.85 {
		t.Errorf("FillPercent 4 fills %.0f %% of its pages, want ≥ 85 %%", 100*multiFill)
	}
}

// BenchmarkCommitLargeFreelist is one small commit in a file whose
// freelist holds 25,000 free pages, every other page of a bucket (a file after a
// retention sweep or the history mover's deletes): the freelist is
// written at every commit, and upstream sorted its spans for it (smtpmux
// patch 4). fsync is off: this is the commit's CPU.
func BenchmarkCommitLargeFreelist(b *testing.B) {
	db, err := Open(filepath.Join(b.TempDir(), "db"), 0o600, &Options{FreelistType: FreelistMapType})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.NoSync = true
	name := []byte("b")
	key := func(i int) []byte { return binary.BigEndian.AppendUint64(nil, uint64(i)) }
	const n = 100000
	val := make([]byte, 1500) // two keys per leaf page
	if err := db.Update(func(tx *Tx) error {
		bk, err := tx.CreateBucket(name)
		if err != nil {
			return err
		}
		for i := range n {
			if err := bk.Put(key(i), val); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	if err := db.Update(func(tx *Tx) error {
		bk := tx.Bucket(name)
		for i := 0; i < n; i += 4 { // every other page
			if err := bk.Delete(key(i)); err != nil {
				return err
			}
			if err := bk.Delete(key(i + 1)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	// Two more commits: the deletes' pages leave the pending list.
	for range 2 {
		if err := db.Update(func(tx *Tx) error { return tx.Bucket(name).Put(key(1), val[:10]) }); err != nil {
			b.Fatal(err)
		}
	}
	if free := db.Stats().FreePageN; free < n/4 {
		b.Fatalf("%d free pages, want at least %d", free, n/4)
	}
	b.ResetTimer()
	for i := range b.N {
		if err := db.Update(func(tx *Tx) error { return tx.Bucket(name).Put(key(1), val[:10+i%2]) }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(db.Stats().FreePageN), "free-pages")
}

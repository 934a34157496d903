package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bMeta      = []byte("meta")
	bTeams     = []byte("teams")
	bKeys      = []byte("keys")
	bCredHash  = []byte("cred_hash") // sha256(secret) → "key:<id>" or "mbxpw:<id>"
	bProviders = []byte("providers")
	bMessages  = []byte("messages")
	bBodies    = []byte("bodies")
	bDue       = []byte("due")      // be64(unix nanos) || msg id → nil
	bInflight  = []byte("inflight") // msg id → nil
	allBuckets = [][]byte{bMeta, bTeams, bKeys, bCredHash, bProviders, bMessages, bBodies, bDue, bInflight, bDataSent, bUsage,
		bGroups, bMailboxes, bMailboxAddr, bMailboxPasswords,
		bIdempotency, bIdempotencyExp, bWebhooks, bWebhookDeliveries, bWebhookDelByHook, bWebhookDue,
		bLimitRequests, bLimitReqByTeam, bLimitReqPending,
		bDomains, bDomainNames, bTrackingLinks, bManagedReserved, bBreakers,
		bProvidersByTeam, bKeysByTeam, bGroupsByTeam, bMailboxesByTeam, bWebhooksByTeam, bDomainsByTeam, bMailboxPwByMailbox,
		bMsgByTeam, bMsgCounts, bMsgByFilter, bRouteSets, bTeamNames, bSuppressions, bSoftBounces, bManagedHeld, bUpstreamIDs,
		bFinished, bHistJournal, bMsgCountLog}
)

// Errors callers branch on.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrClosed   = errors.New("store closed")
)

// maxBatch bounds how many writes share one transaction, so one commit never
// holds a huge dirty set in memory.
const maxBatch = 256

// Store is an open bbolt file. Reads run concurrently; writes are grouped.
type Store struct {
	db *bolt.DB
	// file is the bbolt file opened once more, read-only: large values
	// are read from it rather than through the map (readMapped). nil if
	// it could not be opened (they are then copied from the map).
	file *os.File
	ops  chan *op
	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
	// spoolDir holds bodies larger than InlineLimit, one file each.
	spoolDir string
	// commits and commitNanos measure the grouped commits (fsync included).
	commits, commitNanos, committedOps atomic.Int64
	// heldLazy is how many lazy writes wait for a commit to join.
	heldLazy atomic.Int64
	// recs holds decoded queued message records between the scheduler's
	// read and the claim (msgcache.go).
	recs recCache
	// keyRecs, pwRecs and mbxRecs hold decoded sending keys, mailbox
	// passwords and mailboxes for the credential re-check before each
	// SMTP transaction (credentialTx).
	keyRecs rawCache[APIKey]
	pwRecs  rawCache[MailboxPassword]
	mbxRecs rawCache[Mailbox]
	// teamRecs holds decoded teams, read for every attempt (Team).
	teamRecs rawCache[Team]
	// providersGen increases after every committed provider write, so
	// readers can cache provider lists and reload only when it moved.
	providersGen atomic.Int64
	// changedTeams holds the teams whose providers were written since the
	// scheduler last asked (ProviderChangedTeams), under changedMu.
	changedMu    sync.Mutex
	changedTeams map[string]struct{}
	// lastTrim is when the committer last looked at dropping the memory
	// map's resident pages, trimBase the file-backed RSS after the last
	// drop (trimMapped); only the committer touches them. mapTrims counts
	// the drops.
	lastTrim time.Time
	trimBase uint64
	mapTrims atomic.Int64
	// softLimit is how many soft bounces in a row suppress an address.
	softLimit int
	// repl, set in cluster mode, takes the state-of-record writes
	// (replica.go); nil: this file is the state of record.
	repl Replicator
	// hist is the finished messages' day files (history.go), filled by
	// the mover (runMover) with what finished histDelay ago.
	hist       *history
	histDelay  time.Duration
	log        *slog.Logger
	stopMover  context.CancelFunc
	moverGroup sync.WaitGroup
	// recoverPending is set when Open could not finish an interrupted
	// move, or a restore failed half way: the mover finishes it.
	recoverPending atomic.Bool
	// moving orders the mover's steps (moveHistory, recoverHistory): a
	// step that read a record while another moved it would journal it,
	// find it gone from the main file, take it for changed, and delete
	// the day copy the other wrote (MoveHistory from a test or tool
	// while the mover runs).
	moving sync.Mutex
	// foreignWrites counts the writes submitted that someone waits on,
	// other than the mover's: the mover rests while it moves (pacing,
	// history_pace.go). moverOldest is the finish time (unix nanos) of
	// the oldest message the mover last saw waiting, 0 for none.
	foreignWrites, moverOldest atomic.Int64
	// lastForeign is when (Unix nanoseconds) the last commit that carried
	// a write other than the mover's or a lazy one ended.
	lastForeign atomic.Int64
	// moverBusy is the time the mover's current step has held the
	// committer, read the main file and written day files (nanoseconds):
	// what its pacing charges it, not the time it waited for its turn.
	moverBusy atomic.Int64
}

type op struct {
	fn   func(*bolt.Tx) error
	done chan error
	// syncSpool asks for the spool directory to be fsync'd before the
	// commit (a new spool file's directory entry must be durable when
	// the record pointing at it is).
	syncSpool bool
	// after runs once the transaction committed (file removals).
	after []func()
	// lazy: the write may wait (up to lazyWait) for another write to
	// share its commit (lazyUpdate).
	lazy bool
	// background: the history mover's own write (moverUpdate), not
	// counted in foreignWrites.
	background bool
}

// lazyWait bounds how long a lazy write waits for a commit to join.
const lazyWait = time.Second

// flowWindow is how recently a commit must have carried another write
// than the mover's or a lazy one for writes to count as flowing: the
// mover then keeps each of its commits within its slice (moverYield).
// (A variable for the tests.)
var flowWindow = 20 * time.Millisecond

// Option adjusts Open.
type Option func(*openOptions)

type openOptions struct {
	log       *slog.Logger
	softLimit int
	// noMover leaves finished messages in the main file (package tests
	// that drive MoveHistory themselves).
	noMover bool
	// moveAfter is the mover's delay (histDelay); 0: historyMoveDelay.
	moveAfter time.Duration
}

// WithHistoryMoveAfter sets how long a finished message stays in the main
// file before the mover takes it to its day file (default
// historyMoveDelay): longer keeps more late changes (bounces, complaints)
// from needing a restore, at the cost of a larger main file.
func WithHistoryMoveAfter(d time.Duration) Option {
	return func(o *openOptions) { o.moveAfter = d }
}

// WithoutHistoryMover leaves finished messages in the main file until the
// caller moves them (MoveHistory): for tests and tools that need to know
// where each record is.
func WithoutHistoryMover() Option { return func(o *openOptions) { o.noMover = true } }

// moverAtOpen is false in this package's tests (TestMain), which inspect
// the main file's buckets and move history themselves.
var moverAtOpen = true

// WithLogger sets where Open logs schema migrations (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *openOptions) { o.log = l } }

// Open opens (creating if needed) the store at path and migrates an older
// file to SchemaVersion (see migrations). A second process opening the
// same file fails after timeout instead of corrupting it.
func Open(path string, timeout time.Duration, opts ...Option) (*Store, error) {
	o := openOptions{log: slog.Default(), softLimit: DefaultSoftBounceLimit}
	for _, opt := range opts {
		opt(&o)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: timeout,
		// The freelist is written at every commit, so that Open reads
		// one page run instead of rebuilding it by walking every page of
		// the file (NoFreelistSync): that walk made the whole file
		// resident and took seconds per GB (issue 18). The cost is the
		// freelist's pages in each commit (bench/RESULTS.md). A file
		// written without it gets its freelist rebuilt once, at the
		// first open, and written then.
		NoFreelistSync: false,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := migrate(db, migrations, o.log); err != nil {
		db.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	// Open (the one-time freelist rebuild of an older file) and the
	// migrations may have read much of the map: drop those pages, the
	// daemon starts with what it uses.
	db.View(func(tx *bolt.Tx) error { dropMap(tx); return nil })
	spool := filepath.Join(filepath.Dir(path), "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		db.Close()
		return nil, err
	}
	hist, err := openHistory(filepath.Join(filepath.Dir(path), "history"))
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &Store{db: db, ops: make(chan *op, maxBatch), quit: make(chan struct{}), spoolDir: spool, softLimit: o.softLimit,
		hist: hist, histDelay: historyMoveDelay, log: o.log}
	if o.moveAfter > 0 {
		s.histDelay = o.moveAfter
	}
	if f, err := os.Open(path); err == nil {
		s.file = f // its own descriptor: closing it leaves bbolt's flock alone
	}
	s.trimBase, _ = fileRSS()
	s.wg.Add(1)
	go s.commitLoop()
	// A move or restore a crash interrupted is finished before anything
	// reads: until then a record may be counted in two files. If it
	// cannot be (a full disk), the store opens all the same (the queue
	// matters more than a report counting a record twice) and the mover
	// retries first thing.
	if err := s.recoverHistory(); err != nil {
		s.log.Error("finishing an interrupted history move failed; the mover retries it", "err", err)
		s.recoverPending.Store(true)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopMover = cancel
	if !o.noMover && moverAtOpen {
		s.moverGroup.Add(1)
		go s.runMover(ctx)
	}
	return s, nil
}

// Close stops the committer after pending writes and closes the file.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		if s.stopMover != nil {
			s.stopMover()
		}
		s.moverGroup.Wait()
		close(s.quit)
		s.wg.Wait()
		err = s.db.Close()
		if s.file != nil {
			s.file.Close()
		}
		s.hist.close()
	})
	return err
}

// update runs fn in a grouped, fsync'd write transaction and returns once
// it is durable (or failed). fn may run more than once.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	return s.submit(&op{fn: fn, done: make(chan error, 1)})
}

func (s *Store) submit(o *op) error {
	if !o.lazy && !o.background {
		s.foreignWrites.Add(1)
	}
	select {
	case s.ops <- o:
	case <-s.quit:
		return ErrClosed
	}
	return <-o.done
}

func (s *Store) view(fn func(*bolt.Tx) error) error { return s.db.View(fn) }

func (s *Store) commitLoop() {
	defer s.wg.Done()
	batch := make([]*op, 0, maxBatch)
	// held are lazy writes waiting for a commit to join, until wake.
	var held []*op
	wake := time.NewTimer(time.Hour)
	wake.Stop()
	for {
		select {
		case o := <-s.ops:
			if o.lazy && len(held) < maxBatch {
				if len(held) == 0 {
					wake.Reset(lazyWait)
				}
				held = append(held, o)
				s.heldLazy.Store(int64(len(held)))
				continue
			}
			batch = append(append(batch[:0], held...), o)
			held = held[:0]
			s.heldLazy.Store(0)
			wake.Stop()
		drain:
			for len(batch) < maxBatch {
				select {
				case o := <-s.ops:
					batch = append(batch, o)
				default:
					break drain
				}
			}
			s.runBatch(batch)
		case <-wake.C:
			if len(held) > 0 {
				s.runBatch(append(batch[:0], held...))
				held = held[:0]
				s.heldLazy.Store(0)
			}
		case <-s.quit:
			// Finish what was already handed over, then refuse.
			if len(held) > 0 {
				s.runBatch(held)
			}
			for {
				select {
				case o := <-s.ops:
					s.runBatch([]*op{o})
				default:
					return
				}
			}
		}
	}
}

// writesFlowing reports whether a commit carried another write than the
// mover's or a lazy one within flowWindow.
func (s *Store) writesFlowing() bool {
	return time.Since(time.Unix(0, s.lastForeign.Load())) < flowWindow
}

// carriesForeign reports whether batch holds a write other than lazy or
// the mover's: one a caller waits for.
func carriesForeign(batch []*op) bool {
	for _, o := range batch {
		if !o.lazy && !o.background {
			return true
		}
	}
	return false
}

// lazyUpdate is update for a write nobody waits on (a last-use time):
// it joins the next commit of another write, or commits alone after
// lazyWait, so it costs no fsync of its own while anything else is
// written. Single-client team creation made one extra commit (two
// fdatasyncs) per team for its root key's first use (issue 18).
func (s *Store) lazyUpdate(fn func(*bolt.Tx) error) error {
	return s.submit(&op{fn: fn, done: make(chan error, 1), lazy: true})
}

// runBatch commits all ops in one transaction. When one op fails, the
// transaction is rolled back, that op gets its error, and the rest are
// re-run without it (as bbolt's own Batch does).
func (s *Store) runBatch(batch []*op) {
	for len(batch) > 0 {
		failed := -1
		var failErr error
		for _, o := range batch {
			if o.syncSpool {
				if err := s.syncSpoolDir(); err != nil {
					for _, o := range batch {
						o.done <- err
					}
					return
				}
				break
			}
		}
		start := time.Now()
		err := s.db.Update(func(tx *bolt.Tx) error {
			packAppends(tx)
			for i, o := range batch {
				if err := o.fn(tx); err != nil {
					failed, failErr = i, err
					return err
				}
			}
			return nil
		})
		s.commits.Add(1)
		s.commitNanos.Add(int64(time.Since(start)))
		if failed < 0 {
			s.committedOps.Add(int64(len(batch)))
			if carriesForeign(batch) {
				// As of the commit's end, before the replies: a caller
				// whose write returned finds writes flowing.
				s.lastForeign.Store(time.Now().UnixNano())
			}
			for _, o := range batch {
				if err == nil {
					for _, f := range o.after {
						f()
					}
				}
				o.done <- err
			}
			s.trimMapped() // after the replies: it is not on their path
			return
		}
		batch[failed].done <- failErr
		batch = append(batch[:failed:failed], batch[failed+1:]...)
	}
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	var data []byte
	var err error
	if m, ok := v.(*Message); ok {
		data, err = encodeMessage(m) // the same bytes, without reflection
	} else {
		data, err = json.Marshal(v)
	}
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

func getJSON(b *bolt.Bucket, key string, v any) error {
	data := b.Get([]byte(key))
	if data == nil {
		return ErrNotFound
	}
	return json.Unmarshal(data, v)
}

var jsonUnmarshal = json.Unmarshal

// ProvidersGen is a counter that changes whenever any provider changed.
func (s *Store) ProvidersGen() int64 { return s.providersGen.Load() }

// CommitStats reports how many grouped commits ran, their total duration
// and how many writes they carried (writes per commit is the grouping).
func (s *Store) CommitStats() (commits int64, total time.Duration, ops int64) {
	return s.commits.Load(), time.Duration(s.commitNanos.Load()), s.committedOps.Load()
}

// ForegroundWrites counts the writes callers waited for: neither the
// history mover's nor lazy ones (last-use times). It moves while mail
// flows or the Management API writes.
func (s *Store) ForegroundWrites() int64 { return s.foreignWrites.Load() }

// FileStats is the main file's size and its free space as bbolt sees it:
// pages free for reuse and pages freed by commits some reader may still
// see, and the bytes of the freelist itself, which every commit writes
// (its cost grows with the free pages; issue 18).
type FileStats struct {
	SizeBytes     int64
	FreePages     int
	PendingPages  int
	FreelistBytes int
}

// FileStats reads the main file's figures (cheap: no page is read).
func (s *Store) FileStats() FileStats {
	st := s.db.Stats()
	fs := FileStats{FreePages: st.FreePageN, PendingPages: st.PendingPageN, FreelistBytes: st.FreelistInuse}
	if fi, err := os.Stat(s.db.Path()); err == nil {
		fs.SizeBytes = fi.Size()
	}
	return fs
}

// PageWrites is how many pages the main file's commits have written so
// far (bbolt's TxStats): with CommitStats, the pages a commit dirties,
// which is what the history keys' layout decides (issue 18).
func (s *Store) PageWrites() int64 {
	st := s.db.Stats()
	return st.TxStats.GetWrite()
}

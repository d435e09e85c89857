// Package badger is the embedded store: Badger v4 with synced group commit, time-ordered queue
// keys and TTL retention. It is the only package that imports Badger.
package badger

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bdb "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/ringgate/ringgate/gateway/store"
)

// Options tune the store; the zero value is usable.
type Options struct {
	// Retention is how long finished deliveries, attempts and events are kept (default 720h).
	Retention time.Duration
	// NoSync skips the fsync after each group commit. Only benchmarks use it, to show what the
	// fsync costs.
	NoSync bool
	// SyncInterval is the least time between two fsyncs (default 200µs; negative: none); under
	// load, operations that arrive meanwhile share the next one.
	SyncInterval time.Duration
	// MaxBatch caps the operations merged into one commit (default 512).
	MaxBatch int
	Logger   *slog.Logger
}

// Store is the Badger implementation of store.Store.
type Store struct {
	db   *bdb.DB
	opt  Options
	ops  chan *op
	quit chan struct{}
	// synced carries committed batches to the syncer, which answers them after an fsync that
	// began after their commit: while it syncs, the committer goes on committing.
	synced chan []*op
	wg     sync.WaitGroup
	once   sync.Once

	// enabled caches each endpoint's Enabled flag: Publish consults it for every delivery,
	// and the store is its only writer. Writes in a batch are staged in staged (committer
	// goroutine only) and reach enabled once the batch commits.
	enabledMu sync.RWMutex
	enabled   map[string]bool
	staged    map[string]bool

	seqOnce sync.Once
	seq     *bdb.Sequence
	seqErr  error

	// commits and nops count fsyncs and the operations they made durable (for benchmarks).
	mu            sync.Mutex
	commits, nops int64
}

var _ store.Store = (*Store)(nil)

type op struct {
	fn   func(txn *bdb.Txn) error
	done chan error
	// urgent marks an operation somebody waits on to answer a caller (Publish): its sync waits
	// at most SyncInterval. Others (attempt outcomes) may wait up to lazySync for company.
	urgent bool
	// noSync answers the caller once committed (visible, and safe from a process crash, since the
	// WAL is a memory-mapped file); the next fsync covers it (at most lazySync later).
	noSync bool
}

// lazySync bounds how long a batch of only non-urgent operations waits for its fsync.
const lazySync = 5 * time.Millisecond

var opPool = sync.Pool{New: func() any { return &op{done: make(chan error, 1)} }}

// Open opens (creating if needed) the store in dir.
func Open(dir string, opt Options) (*Store, error) {
	if opt.Retention <= 0 {
		opt.Retention = 720 * time.Hour
	}
	if opt.SyncInterval == 0 {
		opt.SyncInterval = 200 * time.Microsecond
	}
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = 512
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	db, err := bdb.Open(badgerOptions(dir, opt))
	if err != nil {
		return nil, fmt.Errorf("open store at %s: %w", dir, err)
	}
	s := &Store{db: db, opt: opt, ops: make(chan *op, 4096), quit: make(chan struct{}), synced: make(chan []*op, 1024),
		enabled: map[string]bool{}, staged: map[string]bool{}}
	if err := s.loadEnabled(); err != nil {
		db.Close()
		return nil, err
	}
	s.wg.Add(3)
	go s.committer()
	go s.syncer()
	go s.gc()
	return s, nil
}

func badgerOptions(dir string, opt Options) bdb.Options {
	return bdb.DefaultOptions(dir).
		WithLogger(badgerLogger{opt.Logger}).
		WithSyncWrites(false). // the committer syncs once per batch instead
		WithDetectConflicts(false).
		// Sized so the gateway idles small: Badger's defaults take hundreds of MB.
		WithMemTableSize(16 << 20).
		WithNumMemtables(5).
		WithBaseTableSize(2 << 20).
		// No block compression: less CPU per read and write, and without compression (or
		// encryption) Badger reads blocks straight from mmap and needs no block cache.
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(2 << 20).
		WithValueLogFileSize(16 << 20).
		WithNumLevelZeroTables(4).
		WithNumLevelZeroTablesStall(10).
		WithNumCompactors(2).
		// Payloads and queue entries (compressed, a few hundred bytes) go to the value log:
		// appended once instead of rewritten by every flush and compaction.
		WithValueThreshold(256)
}

var _ store.Backuper = (*Store)(nil)

// A backup file is Badger's backup stream between a header and a footer that gives the
// stream's length, so that a copy cut short (a dropped connection) is recognised as such.
const (
	backupHeader = "ringgate backup 1\n"
	backupFooter = "RGBKEND1" // followed by the stream's length, uint64 big-endian
)

// Backup writes a consistent copy of the store as it is now while it keeps serving. Restore
// reads it back.
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	if _, err := io.WriteString(cw, backupHeader); err != nil {
		return cw.n, err
	}
	if _, err := s.db.Backup(cw, 0); err != nil {
		return cw.n, err
	}
	stream := cw.n - int64(len(backupHeader))
	_, err := cw.Write(binary.BigEndian.AppendUint64([]byte(backupFooter), uint64(stream)))
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Restore loads a Backup file into dir, which must hold no store yet. It loads into a
// directory beside dir and renames it into place once synced, so a restore that fails leaves
// nothing behind.
func Restore(dir string, f *os.File, opt Options) error {
	stream, err := backupStream(f)
	if err != nil {
		return fmt.Errorf("restore from %s: %w", f.Name(), err)
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("restore into %s: the directory is not empty; restore into a new one and point storage.path at it", dir)
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	tmp := filepath.Clean(dir) + ".restoring"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("restore into %s: %w", dir, err)
	}
	err = func() error {
		db, err := bdb.Open(badgerOptions(tmp, opt))
		if err != nil {
			return err
		}
		if err := db.Load(bufio.NewReaderSize(stream, 1<<20), 256); err != nil {
			db.Close()
			return err
		}
		if err := db.Sync(); err != nil {
			db.Close()
			return err
		}
		return db.Close()
	}()
	if err == nil {
		os.Remove(dir) // empty, or absent
		err = os.Rename(tmp, dir)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("restore into %s: %w", dir, err)
	}
	return nil
}

// backupStream checks a backup file's header and footer and returns its Badger stream.
func backupStream(f *os.File) (io.Reader, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	head := make([]byte, len(backupHeader))
	if _, err := io.ReadFull(f, head); err != nil || string(head) != backupHeader {
		return nil, errors.New("not a ringgate backup (GET /api/v1/backup makes one)")
	}
	foot := make([]byte, len(backupFooter)+8)
	size := st.Size() - int64(len(head)) - int64(len(foot))
	if size < 0 {
		return nil, errors.New("the backup is incomplete (cut short while it was taken or copied)")
	}
	if _, err := f.ReadAt(foot, st.Size()-int64(len(foot))); err != nil {
		return nil, err
	}
	if string(foot[:len(backupFooter)]) != backupFooter || binary.BigEndian.Uint64(foot[len(backupFooter):]) != uint64(size) {
		return nil, errors.New("the backup is incomplete (cut short while it was taken or copied)")
	}
	return io.NewSectionReader(f, int64(len(head)), size), nil
}

// Close stops the committer after the operations already queued, then closes Badger. It is
// idempotent.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		close(s.quit)
		s.wg.Wait()
		if s.seq != nil {
			s.seq.Release()
		}
		err = s.db.Close()
	})
	return err
}

// Stats reports fsyncs so far and the operations they made durable.
func (s *Store) Stats() (commits, ops int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commits, s.nops
}

var errClosed = errors.New("store is closed")

// update runs fn in a write transaction shared with other concurrent callers; it returns once
// the commit is synced to disk.
func (s *Store) update(ctx context.Context, fn func(txn *bdb.Txn) error) error {
	return s.updateOp(ctx, fn, true)
}

// updateLazy is update for operations whose callers can wait a few milliseconds more for the
// fsync (attempt outcomes): they share syncs with more of their kind.
func (s *Store) updateLazy(ctx context.Context, fn func(txn *bdb.Txn) error) error {
	return s.updateOp(ctx, fn, false)
}

// updateCommitted is update for operations whose callers need not wait for the fsync at all.
func (s *Store) updateCommitted(ctx context.Context, fn func(txn *bdb.Txn) error) error {
	return s.updateOpts(ctx, fn, false, true)
}

func (s *Store) updateOp(ctx context.Context, fn func(txn *bdb.Txn) error, urgent bool) error {
	return s.updateOpts(ctx, fn, urgent, false)
}

func (s *Store) updateOpts(ctx context.Context, fn func(txn *bdb.Txn) error, urgent, noSync bool) error {
	o := opPool.Get().(*op)
	o.fn, o.urgent, o.noSync = fn, urgent, noSync
	select {
	case s.ops <- o:
	case <-s.quit:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	err := <-o.done // always answered, even at Close
	o.fn = nil
	opPool.Put(o)
	return err
}

func (s *Store) committer() {
	defer s.wg.Done()
	batch := make([]*op, 0, s.opt.MaxBatch)
	for {
		select {
		case o := <-s.ops:
			batch = append(batch[:0], o)
		case <-s.quit:
			// Finish what was queued before Close.
			for {
				select {
				case o := <-s.ops:
					s.commit([]*op{o})
				default:
					close(s.synced)
					return
				}
			}
		}
	drain:
		for len(batch) < s.opt.MaxBatch {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break drain
			}
		}
		s.commit(batch)
	}
}

func (s *Store) loadEnabled() error {
	return s.db.View(func(txn *bdb.Txn) error {
		it := txn.NewIterator(bdb.IteratorOptions{Prefix: []byte("ep/"), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var st store.EndpointState
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &st) }); err != nil {
				return fmt.Errorf("endpoint state %s: %w", it.Item().Key(), err)
			}
			s.enabled[st.ID] = st.Enabled
		}
		return nil
	})
}

// putEndpoint writes an endpoint's state and stages its Enabled flag for the cache.
func (s *Store) putEndpoint(txn *bdb.Txn, st *store.EndpointState) error {
	if err := s.setJSON(txn, keyEndpoint(st.ID), st, 0); err != nil {
		return err
	}
	s.staged[st.ID] = st.Enabled
	return nil
}

// endpointEnabled reads the flag as the current batch sees it (committer goroutine only).
func (s *Store) endpointEnabled(id string) bool {
	if en, ok := s.staged[id]; ok {
		return en
	}
	s.enabledMu.RLock()
	defer s.enabledMu.RUnlock()
	en, ok := s.enabled[id]
	return en || !ok
}

// commit runs a batch in one transaction and hands it to the syncer. When any operation fails
// (its own error, or the batch is too big), the batch is re-run one operation per transaction so
// that each caller gets its own result and no failed operation leaves partial writes.
func (s *Store) commit(batch []*op) {
	txn := s.db.NewTransaction(true)
	var err error
	for _, o := range batch {
		if err = o.fn(txn); err != nil {
			break
		}
	}
	if err == nil {
		err = txn.Commit()
	} else {
		txn.Discard()
	}
	if err == nil && len(s.staged) > 0 {
		s.enabledMu.Lock()
		for id, en := range s.staged {
			s.enabled[id] = en
		}
		s.enabledMu.Unlock()
	}
	clear(s.staged)
	if err != nil && len(batch) > 1 {
		for _, o := range batch {
			s.commit([]*op{o})
		}
		return
	}
	if err != nil {
		batch[0].done <- err
		return
	}
	wait := make([]*op, 0, len(batch))
	for _, o := range batch {
		if o.noSync {
			o.done <- nil // committed; the next sync makes it durable
		} else {
			wait = append(wait, o)
		}
	}
	s.synced <- wait
}

// syncer fsyncs once for every committed batch waiting, then answers their callers. Under load
// it spaces syncs at least SyncInterval apart (lazySync while no urgent operation waits), so each
// one covers more operations; an idle store syncs at once.
func (s *Store) syncer() {
	defer s.wg.Done()
	var waiting []*op
	var last time.Time
	closed := false
	for !closed {
		b, ok := <-s.synced
		if !ok {
			return
		}
		waiting = append(waiting[:0], b...)
		urgent := hasUrgent(b)
		for !closed {
			gap := lazySync
			if urgent {
				gap = s.opt.SyncInterval
			}
			wait := gap - time.Since(last)
			if wait <= 0 {
				break
			}
			t := time.NewTimer(wait)
			select {
			case b, ok := <-s.synced:
				if !ok {
					closed = true
				} else {
					waiting = append(waiting, b...)
					urgent = urgent || hasUrgent(b)
				}
			case <-t.C:
			}
			t.Stop()
		}
		var err error
		last = time.Now()
		if !s.opt.NoSync {
			if serr := s.db.Sync(); serr != nil {
				err = fmt.Errorf("sync: %w", serr)
			}
		}
		s.mu.Lock()
		s.commits++
		s.nops += int64(len(waiting))
		s.mu.Unlock()
		for _, o := range waiting {
			o.done <- err
		}
	}
	// Closed while ops were waiting: they were synced above before the loop ended.
}

func hasUrgent(b []*op) bool {
	for _, o := range b {
		if o.urgent {
			return true
		}
	}
	return false
}

// gc reclaims value-log space on a ticker; TTL-expired keys go at compaction.
func (s *Store) gc() {
	defer s.wg.Done()
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			for s.db.RunValueLogGC(0.5) == nil {
			}
		}
	}
}

// Keys. Every key starts with a short type prefix; ids never contain 0x00.
//
//	ev/<event id>                  event (meta + payload), TTL
//	d/<delivery id>                delivery record and its attempts
//	p/<delivery id>                delivery payload
//	de/<endpoint>\0<delivery id>   deliveries of an endpoint
//	q/<endpoint>\0<due int64><id>  queue: due time, big-endian nanoseconds
//	h/<endpoint>\0<delivery id>    held deliveries
//	ep/<endpoint>                  endpoint state
func keyEvent(id string) []byte    { return append([]byte("ev/"), id...) }
func keyDelivery(id string) []byte { return append([]byte("d/"), id...) }
func keyPayload(id string) []byte  { return append([]byte("p/"), id...) }
func keyEndpoint(id string) []byte { return append([]byte("ep/"), id...) }

func epPrefix(kind, endpoint string) []byte {
	k := append([]byte(kind), endpoint...)
	return append(k, 0)
}

func keyByEndpoint(endpoint, id string) []byte { return append(epPrefix("de/", endpoint), id...) }
func keyHeld(endpoint, id string) []byte       { return append(epPrefix("h/", endpoint), id...) }

func keyQueue(endpoint string, due time.Time, id string) []byte {
	k := epPrefix("q/", endpoint)
	k = binary.BigEndian.AppendUint64(k, uint64(due.UnixNano()))
	return append(k, id...)
}

// enqueue writes d's queue key (due d.NextAt). It holds the record and the stored (compressed)
// payload, so reading the queue is one sequential scan with no point lookups. stored nil reads
// the payload from its own key.
func (s *Store) enqueue(txn *bdb.Txn, d *store.Delivery, stored []byte) error {
	if stored == nil {
		var err error
		if stored, err = getBytes(txn, keyPayload(d.ID)); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	v := appendDelivery(make([]byte, 0, 128+len(stored)), d)
	return txn.Set(keyQueue(d.EndpointID, d.NextAt, d.ID), append(v, stored...))
}

// queued reports whether a delivery in status st has a queue key.
func queued(st store.Status) bool { return st == store.Pending || st == store.Retrying }

func (s *Store) ttl() time.Duration { return s.opt.Retention }

func (s *Store) setJSON(txn *bdb.Txn, key []byte, v any, ttl time.Duration) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.set(txn, key, b, ttl)
}

func (s *Store) set(txn *bdb.Txn, key, val []byte, ttl time.Duration) error {
	e := bdb.NewEntry(key, val)
	if ttl > 0 {
		e = e.WithTTL(ttl)
	}
	return txn.SetEntry(e)
}

func getJSON(txn *bdb.Txn, key []byte, v any) error {
	item, err := txn.Get(key)
	if errors.Is(err, bdb.ErrKeyNotFound) {
		return store.ErrNotFound
	}
	if err != nil {
		return err
	}
	return item.Value(func(b []byte) error { return json.Unmarshal(b, v) })
}

func getBytes(txn *bdb.Txn, key []byte) ([]byte, error) {
	item, err := txn.Get(key)
	if errors.Is(err, bdb.ErrKeyNotFound) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// bodyGrace is added to the retention of payloads and index entries, which get their TTL when
// written, so they outlive the record of a delivery that takes a while to finish.
const bodyGrace = 24 * time.Hour

// putRecord writes a delivery's record followed by its encoded attempts, with the retention TTL
// once it is final.
func (s *Store) putRecord(txn *bdb.Txn, d *store.Delivery, attempts []byte) error {
	var ttl time.Duration
	if d.Status.Final() {
		ttl = s.ttl()
	}
	v := appendDelivery(make([]byte, 0, 128+len(attempts)), d)
	return s.set(txn, keyDelivery(d.ID), append(v, attempts...), ttl)
}

// getPayload reads a delivery's payload; nil when it has expired.
func getPayload(txn *bdb.Txn, id string) ([]byte, error) {
	v, err := getBytes(txn, keyPayload(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p, err := unpackPayload(v)
	if err != nil {
		return nil, fmt.Errorf("payload of %s: %w", id, err)
	}
	return p, nil
}

// getDelivery reads a delivery's record (without its payload) and its encoded attempts.
func getDelivery(txn *bdb.Txn, id string) (store.Delivery, []byte, error) {
	var d store.Delivery
	var attempts []byte
	item, err := txn.Get(keyDelivery(id))
	if errors.Is(err, bdb.ErrKeyNotFound) {
		return d, nil, store.ErrNotFound
	}
	if err != nil {
		return d, nil, err
	}
	err = item.Value(func(b []byte) error {
		var err error
		var rest []byte
		d, rest, err = readDelivery(b)
		attempts = append([]byte(nil), rest...)
		return err
	})
	return d, attempts, err
}

// putBody writes a delivery's payload (read back when nil) and its endpoint index entry: with a
// TTL of retention plus grace, or none while the delivery is held, however long that lasts.
func (s *Store) putBody(txn *bdb.Txn, d *store.Delivery, payload []byte) ([]byte, error) {
	ttl := s.ttl() + bodyGrace
	if d.Status == store.Held {
		ttl = 0
	}
	var stored []byte
	if payload == nil {
		var err error
		if stored, err = getBytes(txn, keyPayload(d.ID)); errors.Is(err, store.ErrNotFound) {
			stored = []byte{}
		} else if err != nil {
			return nil, err
		}
	} else {
		stored = packPayload(payload)
	}
	if err := s.set(txn, keyPayload(d.ID), stored, ttl); err != nil {
		return nil, err
	}
	return stored, s.set(txn, keyByEndpoint(d.EndpointID, d.ID), nil, ttl)
}

// prepared is a pending delivery's entries, encoded by the caller so that the committer (the
// one serial stage) only sets them.
type prepared struct {
	d                  store.Delivery
	rec, stored, queue []byte
}

func (s *Store) Publish(ctx context.Context, ev store.EventRecord, ds []store.Delivery) error {
	apply, err := s.prepareOutbox(store.Outbox{Events: []store.EventRecord{ev}, Deliveries: ds})
	if err != nil {
		return err
	}
	return s.update(ctx, apply)
}

// prepareOutbox encodes an outbox's entries outside the committer and returns what writes them
// inside it. A delivery to an endpoint the breaker disabled is stored as held, not queued.
func (s *Store) prepareOutbox(out store.Outbox) (func(txn *bdb.Txn) error, error) {
	var events [][2][]byte // key, value of events nobody subscribes to
	for _, ev := range out.Events {
		referenced := false
		for i := range out.Deliveries {
			if out.Deliveries[i].EventID == ev.ID {
				referenced = true
				break
			}
		}
		if referenced {
			continue // recorded by its deliveries: each carries the id, type, workspace and payload
		}
		meta, err := json.Marshal(ev)
		if err != nil {
			return nil, err
		}
		val := binary.AppendUvarint(make([]byte, 0, len(meta)+len(ev.Payload)+4), uint64(len(meta)))
		events = append(events, [2][]byte{keyEvent(ev.ID), append(append(val, meta...), ev.Payload...)})
	}
	ps := make([]prepared, len(out.Deliveries))
	for i := range out.Deliveries {
		p := &ps[i]
		p.d = out.Deliveries[i]
		p.d.Status, p.d.Payload = store.Pending, nil
		p.rec = appendDelivery(make([]byte, 0, 128), &p.d)
		p.stored = packPayload(out.Deliveries[i].Payload)
		p.queue = append(append(make([]byte, 0, len(p.rec)+len(p.stored)), p.rec...), p.stored...)
	}
	bodyTTL := s.ttl() + bodyGrace
	return func(txn *bdb.Txn) error {
		for _, kv := range events {
			if err := s.set(txn, kv[0], kv[1], s.ttl()); err != nil {
				return err
			}
		}
		for i := range ps {
			p := &ps[i]
			if !s.endpointEnabled(p.d.EndpointID) {
				// Disabled by the breaker: stored as held, not queued (rare; encoded here).
				d := p.d
				d.Status = store.Held
				if err := txn.Set(keyHeld(d.EndpointID, d.ID), nil); err != nil {
					return err
				}
				if err := s.putRecord(txn, &d, nil); err != nil {
					return err
				}
				if err := s.set(txn, keyPayload(d.ID), p.stored, 0); err != nil {
					return err
				}
				if err := s.set(txn, keyByEndpoint(d.EndpointID, d.ID), nil, 0); err != nil {
					return err
				}
				continue
			}
			if err := txn.Set(keyDelivery(p.d.ID), p.rec); err != nil {
				return err
			}
			if err := s.set(txn, keyPayload(p.d.ID), p.stored, bodyTTL); err != nil {
				return err
			}
			if err := s.set(txn, keyByEndpoint(p.d.EndpointID, p.d.ID), nil, bodyTTL); err != nil {
				return err
			}
			if err := txn.Set(keyQueue(p.d.EndpointID, p.d.NextAt, p.d.ID), p.queue); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

func (s *Store) Due(ctx context.Context, endpointID string, from, now time.Time, limit int, skip func(string) bool) ([]store.Delivery, time.Time, error) {
	var out []store.Delivery
	var next time.Time
	err := s.db.View(func(txn *bdb.Txn) error {
		prefix := epPrefix("q/", endpointID)
		it := txn.NewIterator(bdb.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		start := prefix
		if !from.IsZero() {
			start = binary.BigEndian.AppendUint64(append([]byte{}, prefix...), uint64(from.UnixNano()))
		}
		for it.Seek(start); it.ValidForPrefix(prefix); it.Next() {
			k := it.Item().Key()
			if len(k) < len(prefix)+8 {
				continue
			}
			due := time.Unix(0, int64(binary.BigEndian.Uint64(k[len(prefix):])))
			if due.After(now) || len(out) >= limit {
				next = due
				if len(out) >= limit && !due.After(now) {
					next = now
				}
				return nil
			}
			id := string(k[len(prefix)+8:])
			if skip != nil && skip(id) {
				continue
			}
			var d store.Delivery
			var rest []byte
			err := it.Item().Value(func(v []byte) error {
				var err error
				d, rest, err = readDelivery(v)
				if err == nil {
					rest = append([]byte(nil), rest...)
				}
				return err
			})
			if err != nil {
				return fmt.Errorf("queue entry %s: %w", id, err)
			}
			if d.Payload, err = unpackPayload(rest); err != nil {
				return fmt.Errorf("queue entry %s: %w", id, err)
			}
			out = append(out, d)
		}
		return nil
	})
	return out, next, err
}

func (s *Store) Complete(ctx context.Context, o store.Outcome) (*store.EndpointState, error) {
	var st store.EndpointState
	changed := false
	cur := o.Prev
	d := o.Delivery
	d.Payload, d.UpdatedAt = nil, o.Now
	if !queued(d.Status) {
		d.NextAt = time.Time{}
	}
	var ttl time.Duration
	if d.Status.Final() {
		ttl = s.ttl()
	}
	// Encoded here, outside the committer. A first attempt has no earlier ones to keep, so its
	// record is complete without a read; later ones append to the stored list.
	var rec, queueVal []byte
	if cur.Attempts == 0 {
		rec = appendAttemptEntry(appendDelivery(make([]byte, 0, 256), &d), &o.Attempt)
	}
	if queued(d.Status) && cur.Payload != nil {
		queueVal = append(appendDelivery(make([]byte, 0, 128), &d), packPayload(cur.Payload)...)
	}
	err := s.updateLazy(ctx, func(txn *bdb.Txn) error {
		if queued(cur.Status) {
			if err := txn.Delete(keyQueue(cur.EndpointID, cur.NextAt, cur.ID)); err != nil {
				return err
			}
		}
		if rec != nil {
			if err := s.set(txn, keyDelivery(d.ID), rec, ttl); err != nil {
				return err
			}
		} else {
			_, attempts, err := getDelivery(txn, cur.ID)
			if err != nil {
				return err
			}
			if err := s.putRecord(txn, &d, appendAttemptEntry(attempts, &o.Attempt)); err != nil {
				return err
			}
		}
		if queued(d.Status) {
			if queueVal != nil {
				if err := txn.Set(keyQueue(d.EndpointID, d.NextAt, d.ID), queueVal); err != nil {
					return err
				}
			} else if err := s.enqueue(txn, &d, nil); err != nil {
				return err
			}
		}
		var err error
		changed, err = s.breaker(txn, d.EndpointID, o, &st)
		return err
	})
	if err != nil || !changed {
		return nil, err
	}
	return &st, nil
}

// breaker applies an outcome to the endpoint's failure count; it reports whether it wrote.
func (s *Store) breaker(txn *bdb.Txn, endpointID string, o store.Outcome, st *store.EndpointState) (bool, error) {
	if o.Breaker == store.BreakerNone {
		return false, nil
	}
	err := getJSON(txn, keyEndpoint(endpointID), st)
	if errors.Is(err, store.ErrNotFound) {
		*st = store.EndpointState{ID: endpointID, Enabled: true}
	} else if err != nil {
		return false, err
	}
	if !o.ApplyBreaker(st) {
		return false, nil
	}
	return true, s.putEndpoint(txn, st)
}

func (s *Store) Hold(ctx context.Context, id string, now time.Time) error {
	return s.update(ctx, func(txn *bdb.Txn) error {
		var d store.Delivery
		var attempts []byte
		var err error
		if d, attempts, err = getDelivery(txn, id); err != nil {
			return err
		}
		if !queued(d.Status) {
			return store.ErrConflict
		}
		if err := txn.Delete(keyQueue(d.EndpointID, d.NextAt, d.ID)); err != nil {
			return err
		}
		d.Status, d.NextAt, d.UpdatedAt = store.Held, time.Time{}, now
		if err := txn.Set(keyHeld(d.EndpointID, d.ID), nil); err != nil {
			return err
		}
		if err := s.putRecord(txn, &d, attempts); err != nil {
			return err
		}
		_, err = s.putBody(txn, &d, nil) // no TTL while held
		return err
	})
}

func (s *Store) Retry(ctx context.Context, id string, now time.Time) (store.Delivery, error) {
	var d store.Delivery
	err := s.update(ctx, func(txn *bdb.Txn) error {
		var err error
		var attempts []byte
		if d, attempts, err = getDelivery(txn, id); err != nil {
			return err
		}
		if d.Status != store.Failed {
			return fmt.Errorf("%w: delivery is %s; only failed deliveries can be retried", store.ErrConflict, d.Status)
		}
		d.Status, d.Manual, d.NextAt, d.UpdatedAt = store.Pending, true, now, now
		if err := s.putRecord(txn, &d, attempts); err != nil {
			return err
		}
		stored, err := s.putBody(txn, &d, nil) // a fresh retention from now
		if err != nil {
			return err
		}
		return s.enqueue(txn, &d, stored)
	})
	return d, err
}

// releaseChunk bounds the deliveries released per transaction by Enable.
const releaseChunk = 256

func (s *Store) Enable(ctx context.Context, endpointID string, now time.Time) (int, error) {
	_, err := s.UpdateEndpoint(ctx, endpointID, func(st *store.EndpointState) error {
		st.Enabled, st.ConsecutiveFailures, st.DisabledAt = true, 0, time.Time{}
		return nil
	})
	if err != nil {
		return 0, err
	}
	total := 0
	for {
		n := 0
		err := s.update(ctx, func(txn *bdb.Txn) error {
			n = 0
			prefix := epPrefix("h/", endpointID)
			it := txn.NewIterator(bdb.IteratorOptions{Prefix: prefix})
			var ids []string
			for it.Seek(prefix); it.ValidForPrefix(prefix) && len(ids) < releaseChunk; it.Next() {
				ids = append(ids, string(it.Item().Key()[len(prefix):]))
			}
			it.Close()
			for _, id := range ids {
				if err := txn.Delete(keyHeld(endpointID, id)); err != nil {
					return err
				}
				var d store.Delivery
				var attempts []byte
				var err error
				if d, attempts, err = getDelivery(txn, id); err != nil {
					if errors.Is(err, store.ErrNotFound) {
						continue
					}
					return err
				}
				if d.Status != store.Held {
					continue
				}
				d.Status, d.NextAt, d.UpdatedAt = store.Pending, now, now
				if err := s.putRecord(txn, &d, attempts); err != nil {
					return err
				}
				stored, err := s.putBody(txn, &d, nil)
				if err != nil {
					return err
				}
				if err := s.enqueue(txn, &d, stored); err != nil {
					return err
				}
				n++
			}
			if len(ids) == 0 {
				n = -1
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		if n < 0 {
			return total, nil
		}
		total += n
	}
}

func (s *Store) Endpoint(ctx context.Context, id string) (store.EndpointState, error) {
	var st store.EndpointState
	err := s.db.View(func(txn *bdb.Txn) error { return getJSON(txn, keyEndpoint(id), &st) })
	return st, err
}

func (s *Store) UpdateEndpoint(ctx context.Context, id string, fn func(*store.EndpointState) error) (store.EndpointState, error) {
	var st store.EndpointState
	err := s.update(ctx, func(txn *bdb.Txn) error {
		st = store.EndpointState{}
		err := getJSON(txn, keyEndpoint(id), &st)
		if errors.Is(err, store.ErrNotFound) {
			st = store.EndpointState{ID: id, Enabled: true}
		} else if err != nil {
			return err
		}
		if err := fn(&st); err != nil {
			return err
		}
		st.ID = id
		return s.putEndpoint(txn, &st)
	})
	return st, err
}

func (s *Store) Delivery(ctx context.Context, id string) (store.Delivery, []store.Attempt, error) {
	var d store.Delivery
	var as []store.Attempt
	err := s.db.View(func(txn *bdb.Txn) error {
		var attempts []byte
		var err error
		if d, attempts, err = getDelivery(txn, id); err != nil {
			return err
		}
		if d.Payload, err = getPayload(txn, id); err != nil {
			return err
		}
		as, err = readAttempts(attempts)
		return err
	})
	return d, as, err
}

func (s *Store) Deliveries(ctx context.Context, f store.DeliveryFilter) ([]store.Delivery, error) {
	f.Limit = store.PageLimit(f.Limit)
	var out []store.Delivery
	err := s.db.View(func(txn *bdb.Txn) error {
		prefix := []byte("d/")
		if f.EndpointID != "" {
			prefix = epPrefix("de/", f.EndpointID)
		}
		it := txn.NewIterator(bdb.IteratorOptions{Prefix: prefix, Reverse: true})
		defer it.Close()
		start := append(append([]byte{}, prefix...), 0xFF)
		if f.Cursor != "" {
			start = append(append([]byte{}, prefix...), f.Cursor...)
		}
		for it.Seek(start); it.ValidForPrefix(prefix) && len(out) < f.Limit; it.Next() {
			id := string(it.Item().Key()[len(prefix):])
			if id == f.Cursor {
				continue
			}
			d, _, err := getDelivery(txn, id)
			if err != nil {
				if errors.Is(err, store.ErrNotFound) {
					continue
				}
				return err
			}
			if (f.Status != "" && d.Status != f.Status) || (f.Event != "" && d.Event != f.Event) {
				continue
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

func (s *Store) Counts(ctx context.Context) (map[store.Status]int, error) {
	out := map[store.Status]int{store.Pending: 0, store.Held: 0}
	err := s.db.View(func(txn *bdb.Txn) error {
		for _, p := range []struct {
			prefix string
			st     store.Status
		}{{"q/", store.Pending}, {"h/", store.Held}} {
			it := txn.NewIterator(bdb.IteratorOptions{Prefix: []byte(p.prefix)})
			for it.Rewind(); it.Valid(); it.Next() {
				out[p.st]++
			}
			it.Close()
		}
		return nil
	})
	return out, err
}

// badgerLogger sends Badger's chatter to slog: its errors and warnings as they are, its info
// lines at debug.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error("badger: " + trim(fmt.Sprintf(f, a...))) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn("badger: " + trim(fmt.Sprintf(f, a...))) }
func (b badgerLogger) Infof(f string, a ...any)    { b.l.Debug("badger: " + trim(fmt.Sprintf(f, a...))) }
func (b badgerLogger) Debugf(f string, a ...any)   {}

func trim(s string) string { return string(bytes.TrimSpace([]byte(s))) }

package delivery

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringgate/ringgate/gateway/clock"
	"github.com/ringgate/ringgate/gateway/pace"
	"github.com/ringgate/ringgate/gateway/store"
)

// lane schedules one endpoint's deliveries: it reads the endpoint's due queue keys in batches
// into a ready buffer and runs up to delivery.max_in_flight HTTP attempts at once (the current
// config's: a reload resizes running lanes). Lanes are independent, so a receiver that hangs
// holds only its own slots and never delays another endpoint.
//
// A delivery is "claimed" from the moment it is read until its outcome is committed; claimed
// deliveries are never read again, so none is sent twice by one process.
type lane struct {
	e    *Engine
	id   string
	wake chan struct{}
	quit chan struct{}
	// Attempts report back under mu, then poke: freed counts HTTP slots freed, done the
	// outcomes committed (ok false: the delivery is still queued where it was). Neither can
	// fill up, so attempts finishing after the lane stopped never block. reads brings a read's
	// result back from the goroutine that ran it.
	mu    sync.Mutex
	freed int
	done  []doneMsg
	spare []doneMsg // the other buffer of done, swapped in by collect
	reads chan readResult

	// The rest is owned by the run goroutine. While a read runs, claimed is frozen: claims are
	// added only when a read's result is merged, and claims released meanwhile are deferred
	// until the read is back. So a read never sees a committed delivery as still due.
	claimed  map[string]struct{}
	deferred []doneMsg
	reading  bool
	ready    []store.Delivery
	running  int
	next     time.Time // due time of the first delivery not yet read (zero: none known)
	backoff  time.Time // after a read error, no read before this
	// cursor is the due time read up to. Queue keys are written due now or later, so nothing
	// new lands behind it; a full scan from the start runs every fullScanEvery (and after a
	// clock step back or a failed commit) to be sure.
	cursor   time.Time
	lastFull time.Time
	dirty    bool // poked since the last read started: something new may be due
	// tat is the endpoint's rate_limit budget (pace.Rate.Take's state), unless the store keeps
	// it for all the processes that share it (store.Pacer).
	tat int64
	// paceErrLogged is when a shared budget's failure was last logged (once a minute).
	paceErrLogged time.Time
	// rewind is the earliest due time (Unix ns) of deliveries published since the last read
	// started; math.MaxInt64 when none. Publishers compute a due time before their commit, so
	// a read may pass it first: the next read starts no later than it.
	rewind atomic.Int64
}

type doneMsg struct {
	id string
	ok bool
}

type readResult struct {
	ds   []store.Delivery
	next time.Time
	err  error
	now  time.Time
}

const (
	readBatch     = 256
	fullScanEvery = 30 * time.Second
	// storeErrorBackoff keeps a broken disk from spinning the CPU.
	storeErrorBackoff = time.Second
)

func newLane(e *Engine, id string) *lane {
	l := &lane{
		e: e, id: id, wake: make(chan struct{}, 1), quit: make(chan struct{}),
		reads: make(chan readResult, 1), claimed: map[string]struct{}{}, dirty: true,
	}
	l.rewind.Store(math.MaxInt64)
	return l
}

// published pokes the lane for a delivery committed with due time at.
func (l *lane) published(at time.Time) {
	ns := at.UnixNano()
	for {
		cur := l.rewind.Load()
		if ns >= cur || l.rewind.CompareAndSwap(cur, ns) {
			break
		}
	}
	l.poke()
}

func (l *lane) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *lane) isClaimed(id string) bool {
	_, ok := l.claimed[id]
	return ok
}

func (l *lane) release(m doneMsg) {
	if l.reading {
		l.deferred = append(l.deferred, m)
		return
	}
	delete(l.claimed, m.id)
	if !m.ok {
		l.cursor = time.Time{} // read it again from the start
		l.dirty = true
	}
}

// collect takes in what attempts and reads reported, without blocking.
func (l *lane) collect() {
	l.mu.Lock()
	freed, done := l.freed, l.done
	l.freed, l.done = 0, l.spare[:0]
	l.mu.Unlock()
	l.running -= freed
	for _, m := range done {
		l.release(m)
	}
	l.spare = done[:0]
	select {
	case r := <-l.reads:
		l.merge(r)
	default:
	}
}

// limit is how many attempts may run at once: the current config's max_in_flight.
func (l *lane) limit() int { return l.e.cfg.Load().Delivery.MaxInFlight }

// rate is the endpoint's rate_limit (0: none).
func (l *lane) rate() float64 {
	if ep := l.e.endpoint(l.id); ep != nil {
		return ep.cfg.RateLimit
	}
	return 0
}

// take takes an attempt's share of the endpoint's rate_limit (bursts of up to one second's
// worth, and at least one); when there is none it reports how long until there is. A store that
// several processes share keeps the budget, so the limit holds for all of them together: each
// attempt then asks it (a compare-and-set), which only rate-limited endpoints pay for.
func (l *lane) take(now time.Time, rate float64) (bool, time.Duration) {
	if rate <= 0 {
		return true, 0
	}
	r := pace.Rate{PerSecond: rate, Burst: max(rate, 1)}
	if p, ok := l.e.store.(store.Pacer); ok {
		ctx, cancel := context.WithTimeout(context.Background(), paceTimeout)
		wait, err := p.Pace(ctx, "endpoint."+l.id, r, now)
		cancel()
		if errors.Is(err, store.ErrContended) {
			return false, paceContended // other nodes are taking shares: ask again in a moment
		}
		if err != nil {
			// no attempt without the budget: a store that cannot answer this could not record
			// the attempt either
			if now.Sub(l.paceErrLogged) >= time.Minute {
				l.paceErrLogged = now
				l.e.log.Error("rate limit: the shared budget does not answer; attempts wait (logged once a minute)", "endpoint", l.id, "err", err)
			}
			return false, storeErrorBackoff
		}
		return wait == 0, wait
	}
	ok, next, wait := r.Take(l.tat, now)
	l.tat = next
	return ok, wait
}

// paceTimeout bounds asking a shared store for a rate limit's share; paceContended is how long
// a lane waits to ask again when the store's budget was contended.
const (
	paceTimeout   = 2 * time.Second
	paceContended = 10 * time.Millisecond
)

func (l *lane) merge(r readResult) {
	l.reading = false
	for _, m := range l.deferred {
		l.release(m)
	}
	l.deferred = l.deferred[:0]
	if r.err != nil {
		l.e.log.Error("read delivery queue", "endpoint", l.id, "err", r.err)
		l.backoff = r.now.Add(storeErrorBackoff)
		return
	}
	for _, d := range r.ds {
		l.claimed[d.ID] = struct{}{}
		if d.NextAt.After(l.cursor) {
			l.cursor = d.NextAt
		}
	}
	l.ready = append(l.ready, r.ds...)
	l.next = r.next
	if len(r.ds) == readBatch {
		l.dirty = true // there may be more due already
	}
}

// startRead reads the next batch in another goroutine, so sending goes on meanwhile.
func (l *lane) startRead(now time.Time) {
	from := l.cursor
	if now.Before(from) || now.Sub(l.lastFull) >= fullScanEvery {
		from, l.lastFull = time.Time{}, now
	}
	if r := l.rewind.Swap(math.MaxInt64); r != math.MaxInt64 && !from.IsZero() && r < from.UnixNano() {
		from = time.Unix(0, r)
	}
	l.reading, l.dirty = true, false
	go func() {
		ds, next, err := l.e.store.Due(context.Background(), l.id, from, now, readBatch, l.isClaimed)
		l.reads <- readResult{ds, next, err, now}
	}()
}

func (l *lane) run() {
	defer l.e.wg.Done()
	for {
		l.collect()
		now := l.e.clock.Now()
		due := l.dirty || (!l.next.IsZero() && !l.next.After(now)) || now.Sub(l.lastFull) >= fullScanEvery
		limit := l.limit()
		if !l.reading && due && len(l.ready) < readBatch/2 && len(l.claimed) < limit+6*readBatch && !now.Before(l.backoff) {
			l.startRead(now)
		}
		rate, throttled := l.rate(), time.Duration(-1)
		for l.running < limit && len(l.ready) > 0 {
			if ok, after := l.take(now, rate); !ok {
				throttled = after
				break
			}
			d := l.ready[0]
			l.ready[0] = store.Delivery{}
			l.ready = l.ready[1:]
			l.running++
			l.e.wg.Add(1)
			go l.attempt(d)
		}
		// Sleep until poked, a read returns, or the next due time (or the end of a backoff).
		wait := time.Duration(-1)
		if !l.reading {
			switch {
			case now.Before(l.backoff):
				wait = l.backoff.Sub(now)
			case l.next.After(now):
				wait = l.next.Sub(now)
				// a due time already past means a read is waiting for room: a slot's
				// release will poke
			case l.running == 0 && len(l.ready) == 0:
				// idle: the periodic full scan still comes, for anything that landed behind
				// the cursor without a poke (a busy lane is poked by its attempts)
				wait = max(l.lastFull.Add(fullScanEvery).Sub(now), 0)
			}
		}
		if throttled >= 0 && (wait < 0 || throttled < wait) {
			wait = throttled // the rate limit's next token
		}
		var timer clock.Timer
		var timerC <-chan time.Time
		if wait >= 0 {
			timer = l.e.clock.NewTimer(wait)
			timerC = timer.C()
		}
		stop := false
		select {
		case <-l.wake:
			l.dirty = true
		case r := <-l.reads:
			l.merge(r)
		case <-timerC:
		case <-l.quit:
			stop = true
		case <-l.e.stop:
			stop = true
		}
		if timer != nil {
			timer.Stop()
		}
		if stop {
			if l.reading {
				<-l.reads // let the read finish before the store may close
			}
			return
		}
	}
}

// attempt runs one attempt; the HTTP slot is released as soon as the exchange is over, and the
// claim when the outcome is committed.
func (l *lane) attempt(d store.Delivery) {
	defer l.e.wg.Done()
	released := false
	release := func() {
		if !released {
			released = true
			l.mu.Lock()
			l.freed++
			l.mu.Unlock()
			l.poke()
		}
	}
	ok := l.e.attempt(d, release)
	release()
	l.mu.Lock()
	l.done = append(l.done, doneMsg{d.ID, ok})
	l.mu.Unlock()
	l.poke()
}

package sessions

import (
	"sync"
	"time"

	"github.com/ringgate/ringgate/gateway/store"
)

// holding is one session's hold of a number.
type holding struct {
	session     string
	from, until time.Time
}

// number is a pool number's state: its holder and its recent holds, newest last, for matching
// calls to the visit that showed the number.
type number struct {
	e164     string
	holds    []holding // recent, newest last; at most keepHolds
	released time.Time // when the latest hold ended or was taken over (LRU order)
}

// keepHolds bounds the holds remembered per number for matching.
const keepHolds = 16

func (n *number) current(now time.Time) *holding {
	if len(n.holds) == 0 {
		return nil
	}
	h := &n.holds[len(n.holds)-1]
	if h.until.After(now) {
		return h
	}
	return nil
}

func (n *number) push(h holding) {
	if len(n.holds) == keepHolds {
		copy(n.holds, n.holds[1:])
		n.holds = n.holds[:keepHolds-1]
	}
	n.holds = append(n.holds, h)
}

// pool is a campaign's dynamic number pool.
type pool struct {
	mu      sync.Mutex
	numbers []*number
	byE164  map[string]*number
	reuses  int64 // numbers taken from a live hold because the pool was exhausted
}

func newPool(nums []string) *pool {
	p := &pool{byE164: map[string]*number{}}
	for _, e := range nums {
		n := &number{e164: e}
		p.numbers = append(p.numbers, n)
		p.byE164[e] = n
	}
	return p
}

// assign gives session a number until until: the one it holds if still held, else the least
// recently used free number, else (pool exhausted) the one held longest. reused reports taking a
// number from a live hold.
func (p *pool) assign(session, held string, now, until time.Time) (e164 string, from time.Time, reused bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := p.byE164[held]; n != nil {
		if h := n.current(now); h != nil && h.session == session {
			h.until = until // a heartbeat: same number, longer hold
			return n.e164, h.from, false
		}
	}
	var best *number
	for _, n := range p.numbers { // least recently used free number
		if n.current(now) == nil && (best == nil || n.released.Before(best.released)) {
			best = n
		}
	}
	if best == nil { // exhausted: the number held longest
		for _, n := range p.numbers {
			if best == nil || n.current(now).from.Before(best.current(now).from) {
				best = n
			}
		}
		if h := best.current(now); h != nil {
			h.until = now // the old hold ends here
		}
		reused = true
		p.reuses++
	}
	best.released = now
	best.push(holding{session: session, from: now, until: until})
	return best.e164, now, reused
}

// restore replays a stored hold at start.
func (p *pool) restore(session, e164 string, from, until time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.byE164[e164]
	if n == nil {
		return // the number left the pool since
	}
	n.push(holding{session: session, from: from, until: until})
	if from.After(n.released) {
		n.released = from
	}
}

// holder returns the session that held e164 at t.
func (p *pool) holder(e164 string, t time.Time) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.byE164[e164]
	if n == nil {
		return "", false
	}
	for i := len(n.holds) - 1; i >= 0; i-- {
		h := n.holds[i]
		if !h.from.After(t) && h.until.After(t) {
			return h.session, true
		}
	}
	return "", false
}

// stats reports numbers held now and reuses so far.
func (p *pool) stats(now time.Time) (held, size int, reuses int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range p.numbers {
		if n.current(now) != nil {
			held++
		}
	}
	return held, len(p.numbers), p.reuses
}

// sync replaces a number's holds with those of a shared store's record (oldest first).
func (p *pool) sync(e164 string, hs []store.Hold) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.byE164[e164]
	if n == nil {
		return
	}
	if len(hs) > keepHolds {
		hs = hs[len(hs)-keepHolds:]
	}
	n.holds = n.holds[:0]
	for _, h := range hs {
		n.holds = append(n.holds, holding{session: h.Session, from: h.From, until: h.Until})
	}
	if len(hs) > 0 && hs[len(hs)-1].From.After(n.released) {
		n.released = hs[len(hs)-1].From
	}
}

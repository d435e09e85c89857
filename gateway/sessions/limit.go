package sessions

import (
	"net/netip"
	"sync"
	"time"
)

// limiter counts the new sessions each visitor address starts in a workspace: a bucket of
// tracker.new_sessions_per_minute tokens per address, refilled at that rate. A flood from one
// address then neither churns the pool's numbers (taking them from visitors who may call) nor
// fills the store.
type limiter struct {
	mu        sync.Mutex
	buckets   map[limitKey]*bucket
	pruneNext int // prune when this many buckets are held: twice those left by the last pruning
}

type limitKey struct {
	workspace int64
	addr      netip.Addr // an IPv6 address by its /64: one host has a whole /64 to itself
}

type bucket struct {
	tokens    float64
	at        time.Time
	perMinute int
}

// Buckets are pruned (the full ones dropped) when there are pruneAt, then whenever their number
// has doubled since; past maxBuckets, as in a flood from many addresses at once, they are all
// forgotten: memory stays bounded, and each address starts again with a full bucket.
const (
	pruneAt    = 10_000
	maxBuckets = 100_000
)

func limitKeyOf(workspace int64, a netip.Addr) limitKey {
	a = a.Unmap()
	if a.Is6() {
		a = netip.PrefixFrom(a.WithZone(""), 64).Masked().Addr()
	}
	return limitKey{workspace, a}
}

// allow takes a token from key's bucket; when it is empty, it reports how long until the next.
func (l *limiter) allow(key limitKey, perMinute int, now time.Time) (bool, time.Duration) {
	rate := float64(perMinute) / 60 // tokens a second
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= max(pruneAt, l.pruneNext) {
			l.prune(now)
			l.pruneNext = 2 * len(l.buckets)
		}
		if l.buckets == nil || len(l.buckets) >= maxBuckets {
			l.buckets = map[limitKey]*bucket{}
		}
		b = &bucket{tokens: float64(perMinute), at: now, perMinute: perMinute}
		l.buckets[key] = b
	} else {
		b.tokens = min(float64(perMinute), b.tokens+now.Sub(b.at).Seconds()*rate)
		b.at, b.perMinute = now, perMinute
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / rate * float64(time.Second))
}

// prune drops the buckets that have refilled.
func (l *limiter) prune(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*float64(b.perMinute)/60 >= float64(b.perMinute) {
			delete(l.buckets, k)
		}
	}
}

package sessions

import (
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/ringgate/ringgate/gateway/pace"
)

// limiter counts the new sessions each visitor address starts in a workspace: a bucket of
// tracker.new_sessions_per_minute tokens per address, refilled at that rate. A flood from one
// address then neither churns the pool's numbers (taking them from visitors who may call) nor
// fills the store. It counts for one process; in a cluster the store keeps each address's budget
// for all the nodes (Service.take).
type limiter struct {
	mu        sync.Mutex
	buckets   map[limitKey]int64 // by address, pace.Rate.Take's state
	pruneNext int                // prune when this many buckets are held: twice those left by the last pruning
}

type limitKey struct {
	workspace int64
	addr      netip.Addr // an IPv6 address by its /64: one host has a whole /64 to itself
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

// rateOf is tracker.new_sessions_per_minute as a pace: a minute's worth at once, then one every
// 60/perMinute seconds.
func rateOf(perMinute int) pace.Rate {
	return pace.Rate{PerSecond: float64(perMinute) / 60, Burst: float64(perMinute)}
}

// allow takes a session's share of key's budget; when there is none, it reports how long until
// there is.
func (l *limiter) allow(key limitKey, perMinute int, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tat, known := l.buckets[key]
	if !known {
		if len(l.buckets) >= max(pruneAt, l.pruneNext) {
			l.prune(now)
			l.pruneNext = 2 * len(l.buckets)
		}
		if l.buckets == nil || len(l.buckets) >= maxBuckets {
			l.buckets = map[limitKey]int64{}
		}
	}
	ok, next, wait := rateOf(perMinute).Take(tat, now)
	l.buckets[key] = next
	return ok, wait
}

// prune drops the buckets that have refilled.
func (l *limiter) prune(now time.Time) {
	for k, tat := range l.buckets {
		if tat <= now.UnixNano() {
			delete(l.buckets, k)
		}
	}
}

// String names the key for a shared store's pace (store.Pacer).
func (k limitKey) String() string {
	return "tracker." + strconv.FormatInt(k.workspace, 10) + "." + k.addr.String()
}

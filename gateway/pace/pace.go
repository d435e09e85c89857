// Package pace spaces events to a rate, with bursts: an endpoint's rate_limit, the tracker's new
// sessions per address. It is the generic cell rate algorithm (GCRA), the token bucket told by
// one number, the time at which the bucket would be full again (its "theoretical arrival time").
// One number is what makes the limit shareable: a cluster keeps it in one record, changed with
// compare-and-set (store.Pacer), so the limit holds for all nodes together rather than per node.
package pace

import (
	"math"
	"time"
)

// Rate is PerSecond events a second, with bursts of up to Burst at once (at least one).
type Rate struct {
	PerSecond float64
	Burst     float64
}

// Take decides one event at now, given the state tat (Unix nanoseconds; 0: no event yet). It
// returns whether the event may happen, the state after it (tat itself when it may not), and when
// it may not, how long until it may.
//
// Equivalently: a bucket of Burst tokens, full at tat, refilled at PerSecond; an event takes one.
func (r Rate) Take(tat int64, now time.Time) (ok bool, next int64, wait time.Duration) {
	if r.PerSecond <= 0 {
		return true, tat, 0
	}
	// in nanoseconds, as integers: a Unix time in nanoseconds has more digits than a float64
	iv := ns(float64(time.Second) / r.PerSecond) // what one event takes of the budget
	tolerance := ns((max(r.Burst, 1) - 1) * float64(iv))
	n := now.UnixNano()
	t := max(tat, n)
	if ahead := t - n; ahead > tolerance {
		return false, tat, time.Duration(ahead - tolerance)
	}
	return true, t + iv, 0
}

// ns rounds a duration in nanoseconds to an integer, at most a century.
func ns(f float64) int64 { return int64(math.Round(min(f, float64(100*365*24*time.Hour)))) }

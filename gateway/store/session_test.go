package store

import (
	"testing"
	"time"
)

// A session's TTL is counted on the clock its hold was set by, not the wall clock: a test's fake
// clock (or any injected one) may be months from it, and sessions then expired a second after
// they were written (TestRestartRebuildsPools failed whenever writing them took longer).
func TestSessionTTLUsesTheCallersClock(t *testing.T) {
	then := time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC)
	s := Session{HoldUntil: then.Add(30 * time.Minute)}
	for _, c := range []struct {
		now  time.Time
		want time.Duration
	}{
		{then, 32 * time.Minute},
		{then.Add(29 * time.Minute), 3 * time.Minute},
		{then.Add(time.Hour), time.Second}, // long over: at least a second
	} {
		if got := SessionTTL(s, c.now, 2*time.Minute); got != c.want {
			t.Errorf("at %s: %s, want %s", c.now.Format(time.Kitchen), got, c.want)
		}
	}
}

package pace

import (
	"encoding/binary"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC)

func TestTake(t *testing.T) {
	type step struct {
		at   time.Duration // after t0
		ok   bool
		wait time.Duration
	}
	cases := []struct {
		name  string
		rate  Rate
		steps []step
	}{
		{"a burst, then one per interval", Rate{2, 2}, []step{
			{0, true, 0}, {0, true, 0}, {0, false, 500 * time.Millisecond},
			{400 * time.Millisecond, false, 100 * time.Millisecond},
			{500 * time.Millisecond, true, 0}, {500 * time.Millisecond, false, 500 * time.Millisecond},
			{time.Second, true, 0},
		}},
		{"an idle spell refills the burst, no more", Rate{2, 2}, []step{
			{0, true, 0}, {0, true, 0},
			{time.Hour, true, 0}, {time.Hour, true, 0}, {time.Hour, false, 500 * time.Millisecond},
		}},
		{"a burst under one is one", Rate{1, 0}, []step{
			{0, true, 0}, {0, false, time.Second}, {time.Second, true, 0},
		}},
		{"new sessions a minute (3)", Rate{3.0 / 60, 3}, []step{
			{0, true, 0}, {time.Second, true, 0}, {2 * time.Second, true, 0},
			{3 * time.Second, false, 17 * time.Second}, {20 * time.Second, true, 0},
			{21 * time.Second, false, 19 * time.Second},
		}},
		{"no rate: no limit", Rate{0, 0}, []step{{0, true, 0}, {0, true, 0}, {0, true, 0}}},
		{"a rate under one a second", Rate{0.5, 1}, []step{
			{0, true, 0}, {time.Second, false, time.Second}, {2 * time.Second, true, 0},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var tat int64
			for i, s := range c.steps {
				ok, next, wait := c.rate.Take(tat, t0.Add(s.at))
				if ok != s.ok || wait != s.wait {
					t.Fatalf("step %d at +%s: ok %v wait %s, want %v %s", i, s.at, ok, wait, s.ok, s.wait)
				}
				if !ok && next != tat {
					t.Fatalf("step %d: a refused event changed the state", i)
				}
				tat = next
			}
		})
	}
}

// FuzzTake plays a sequence of events at increasing times: in no window [a, b] are more admitted
// than a burst and the window's worth; a refused event is admitted at now+wait and not a
// nanosecond before; the first event always is.
func FuzzTake(f *testing.F) {
	f.Add(uint16(200), uint8(2), []byte{0, 0, 0, 0, 1, 2, 3, 200, 0, 0, 90})
	f.Add(uint16(5), uint8(3), []byte{0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 1})
	f.Add(uint16(65535), uint8(1), []byte{1, 1, 1, 1, 1, 1})
	f.Fuzz(func(t *testing.T, centiPerSecond uint16, burst uint8, gaps []byte) {
		if centiPerSecond == 0 {
			return
		}
		r := Rate{float64(centiPerSecond) / 100, float64(burst)}
		var tat int64
		var admitted []time.Time
		now := t0
		for i := 0; i+1 < len(gaps); i += 2 {
			now = now.Add(time.Duration(binary.LittleEndian.Uint16(gaps[i:])) * time.Millisecond)
			ok, next, wait := r.Take(tat, now)
			if len(admitted) == 0 && !ok {
				t.Fatal("the first event was refused")
			}
			if !ok {
				if wait <= 0 {
					t.Fatalf("refused with wait %s", wait)
				}
				if early, _, _ := r.Take(tat, now.Add(wait-1)); early {
					t.Fatalf("admitted a nanosecond before the wait of %s", wait)
				}
				if late, _, _ := r.Take(tat, now.Add(wait)); !late {
					t.Fatalf("refused after the wait of %s", wait)
				}
				continue
			}
			tat = next
			admitted = append(admitted, now)
			// the window ending now, from each earlier event
			for j := range admitted {
				n := float64(len(admitted) - j)
				allowed := max(r.Burst, 1) + now.Sub(admitted[j]).Seconds()*r.PerSecond
				if n > allowed+1e-6 {
					t.Fatalf("%v events in %s, at most %.3f allowed", n, now.Sub(admitted[j]), allowed)
				}
			}
		}
	})
}

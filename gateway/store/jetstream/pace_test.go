package jetstream

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringgate/ringgate/gateway/pace"
	"github.com/ringgate/ringgate/gateway/store"
)

// A key's budget is one for both nodes: of 16 events at the same instant, taken by eight
// goroutines on each node at once, exactly a burst's worth go through, whichever node asks;
// the next share comes one interval later; another key has its own budget.
func TestPaceIsOneBudgetForAllNodes(t *testing.T) {
	a, b := twoNodes(t, Options{})
	ctx := context.Background()
	r := pace.Rate{PerSecond: 4, Burst: 4}
	now := time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC)
	var taken, refused atomic.Int32
	onBothAtOnce(16, a, b, func(s *Store) {
		wait, err := s.Pace(ctx, "ep.crm", r, now)
		switch {
		case err != nil:
			t.Error(err)
		case wait == 0:
			taken.Add(1)
		case wait != 250*time.Millisecond:
			t.Errorf("refused with wait %s, want one interval (250ms)", wait)
		default:
			refused.Add(1)
		}
	})
	if taken.Load() != 4 {
		t.Fatalf("%d events taken at one instant on two nodes, want the burst of 4 (%d refused)", taken.Load(), refused.Load())
	}
	if wait, err := b.Pace(ctx, "ep.crm", r, now.Add(200*time.Millisecond)); err != nil || wait != 50*time.Millisecond {
		t.Fatalf("200ms later: wait %s (%v), want 50ms", wait, err)
	}
	if wait, err := a.Pace(ctx, "ep.crm", r, now.Add(250*time.Millisecond)); err != nil || wait != 0 {
		t.Fatalf("one interval later: wait %s (%v), want the share taken", wait, err)
	}
	if wait, err := a.Pace(ctx, "ep.other", r, now); err != nil || wait != 0 {
		t.Fatalf("another key: wait %s (%v), want its own budget", wait, err)
	}
}

// Many writers at one key at once, with room in the budget for all: each takes its share or,
// having lost every round to the others, says so (store.ErrContended). None is told to wait, as
// if the budget were spent: a visitor got a 429 that way while five others started sessions.
func TestPaceContendedIsNotRefused(t *testing.T) {
	a, b := twoNodes(t, Options{})
	r := pace.Rate{PerSecond: 1, Burst: 1000}
	now := time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC)
	var taken, contended atomic.Int32
	onBothAtOnce(48, a, b, func(s *Store) {
		wait, err := s.Pace(context.Background(), "tracker.1.127.0.0.1", r, now)
		switch {
		case errors.Is(err, store.ErrContended):
			contended.Add(1)
		case err != nil:
			t.Error(err)
		case wait != 0:
			t.Errorf("told to wait %s with the budget nearly whole", wait)
		default:
			taken.Add(1)
		}
	})
	t.Logf("%d shares taken, %d contended", taken.Load(), contended.Load())
	if taken.Load() == 0 {
		t.Fatal("no writer took a share")
	}
}

// onBothAtOnce runs f n times at once, in as many goroutines, half of them on each node.
func onBothAtOnce(n int, a, b *Store, f func(s *Store)) {
	var wg sync.WaitGroup
	for i := range n {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() { f(s) })
	}
	wg.Wait()
}

// BenchmarkPace is one event's share taken from a one-node server over loopback: what an attempt
// to a rate-limited endpoint, or a new session, adds in a cluster.
func BenchmarkPace(b *testing.B) {
	srv, err := StartServer(ServerOptions{Name: "n1", Listen: "127.0.0.1:0", StoreDir: filepath.Join(b.TempDir(), "js"), Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Shutdown()
	s, err := Open(context.Background(), Options{URLs: []string{srv.ClientURL()}, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r := pace.Rate{PerSecond: 1e9, Burst: 1e9}
	now := time.Now()
	for b.Loop() {
		if _, err := s.Pace(context.Background(), "endpoint.crm", r, now); err != nil {
			b.Fatal(err)
		}
	}
}

package badger

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringgate/ringgate/gateway/store"
)

func benchStore(b *testing.B) *Store {
	s, err := Open(b.TempDir(), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

var payload = make([]byte, 1500)

func publishN(b *testing.B, s *Store, n int) []store.Delivery {
	now := time.Now()
	ds := make([]store.Delivery, n)
	for i := range ds {
		ds[i] = store.Delivery{ID: store.NewID("msg_", now), EventID: "evt_1", Event: "call.completed", WorkspaceID: 1,
			EndpointID: "ep", NextAt: now, CreatedAt: now, UpdatedAt: now, Payload: payload}
	}
	for i := 0; i < n; i += 64 {
		j := min(i+64, n)
		if err := s.Publish(context.Background(), store.EventRecord{ID: store.NewID("evt_", now), Payload: payload}, ds[i:j]); err != nil {
			b.Fatal(err)
		}
	}
	return ds
}

func BenchmarkComplete(b *testing.B) {
	s := benchStore(b)
	ds, _, _ := s.Due(context.Background(), "ep", time.Time{}, time.Now().Add(time.Hour), 1<<30, nil)
	ds = publishN(b, s, b.N)
	ds, _, _ = s.Due(context.Background(), "ep", time.Time{}, time.Now().Add(time.Hour), b.N+1, nil)
	var i atomic.Int64
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d := ds[i.Add(1)-1]
			nd := d
			nd.Status, nd.Attempts = store.Success, 1
			if _, err := s.Complete(context.Background(), store.Outcome{Prev: d, Delivery: nd, Attempt: store.Attempt{N: 1, At: time.Now(), StatusCode: 200}, Now: time.Now()}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDue(b *testing.B) {
	s := benchStore(b)
	publishN(b, s, 20000)
	b.ResetTimer()
	n := 0
	for n < b.N {
		ds, _, err := s.Due(context.Background(), "ep", time.Time{}, time.Now().Add(time.Hour), 256, nil)
		if err != nil {
			b.Fatal(err)
		}
		n += len(ds)
	}
}

func BenchmarkPublish(b *testing.B) {
	s := benchStore(b)
	now := time.Now()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d := store.Delivery{ID: store.NewID("msg_", now), EndpointID: "ep", NextAt: now, Payload: payload}
			if err := s.Publish(context.Background(), store.EventRecord{ID: store.NewID("evt_", now), Payload: payload}, []store.Delivery{d}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

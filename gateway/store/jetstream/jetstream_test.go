package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ringgate/ringgate/gateway/store"
	"github.com/ringgate/ringgate/gateway/store/storetest"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openEmbedded runs a one-node embedded server on dir and opens the store on it; Close stops
// both, so opening dir again is a restart.
func openEmbedded(t *testing.T, dir string) store.Store {
	t.Helper()
	srv, err := StartServer(ServerOptions{Name: "n1", StoreDir: filepath.Join(dir, "js"), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), Options{Server: srv, Logger: quiet()})
	if err != nil {
		srv.Shutdown()
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) { storetest.Run(t, openEmbedded) }

// A node that dies between its commit and applying it leaves the commit in RG_OUTBOX; the
// applier (of any node) applies it, but a call's commit only if the call's compare-and-set
// went through.
func TestOutboxApplierFinishesADeadWritersCommits(t *testing.T) {
	applierGrace, casWindow = 200*time.Millisecond, time.Second
	t.Cleanup(func() { applierGrace, casWindow = 2*time.Second, 30*time.Second })
	s := openEmbedded(t, t.TempDir()).(*Store)
	ctx := context.Background()
	now := time.Now()
	mk := func(n int) store.Delivery {
		return store.Delivery{ID: store.NewID("msg_", now), EventID: fmt.Sprintf("evt_%d", n), Event: "call.started", WorkspaceID: 1,
			EndpointID: "ep", NextAt: now, CreatedAt: now, Payload: []byte(fmt.Sprintf(`{"n":%d}`, n))}
	}
	plain, won, lost := mk(1), mk(2), mk(3)
	if _, err := s.commit(ctx, newTxn("", store.Outbox{Deliveries: []store.Delivery{plain}})); err != nil {
		t.Fatal(err)
	}
	tw := newTxn("CAwon", store.Outbox{Deliveries: []store.Delivery{won}})
	if _, err := s.commit(ctx, tw); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(callValue{Call: store.CallLog{ID: 1, SID: "CAwon"}, Txs: []string{tw.Tx}})
	if _, err := s.calls.Create(ctx, "CAwon", b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.commit(ctx, newTxn("CAlost", store.Outbox{Deliveries: []store.Delivery{lost}})); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := s.outbox.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d commits still in the outbox", info.State.Msgs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ds, _, err := s.Due(ctx, "ep", time.Time{}, now.Add(time.Second), 10, nil)
	if err != nil || len(ds) != 2 {
		t.Fatalf("due after recovery: %+v %v", ds, err)
	}
	for _, d := range ds {
		if d.ID == lost.ID {
			t.Fatal("the commit of a lost compare-and-set was applied")
		}
	}
	if _, _, err := s.Delivery(ctx, lost.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("lost delivery: %v", err)
	}
}

// twoNodes runs a NATS server and two stores on it with opt (its URLs and logger set), as two
// ringgate nodes would share it.
func twoNodes(t *testing.T, opt Options) (a, b *Store) {
	t.Helper()
	srv, err := StartServer(ServerOptions{Name: "n1", Listen: "127.0.0.1:0", StoreDir: filepath.Join(t.TempDir(), "js"), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	opt.URLs, opt.Logger = []string{srv.ClientURL()}, quiet()
	open := func() *Store {
		s, err := Open(context.Background(), opt)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	return open(), open()
}

// twoNodesOneHolding runs a NATS server and two stores on it with the given lease (AckWait);
// node a publishes three deliveries to endpoint "ep" and fetches them.
func twoNodesOneHolding(t *testing.T, lease time.Duration) (a, b *Store, now time.Time) {
	t.Helper()
	ctx := context.Background()
	a, b = twoNodes(t, Options{AckWait: lease})
	now = time.Now()
	var ds []store.Delivery
	for i := range 3 {
		ds = append(ds, store.Delivery{ID: store.NewID("msg_", now), EventID: fmt.Sprintf("evt_%d", i), Event: "call.completed",
			WorkspaceID: 1, EndpointID: "ep", NextAt: now, CreatedAt: now, Payload: []byte(`{}`)})
	}
	if err := a.Publish(ctx, store.EventRecord{ID: "evt_x", Type: "call.completed", WorkspaceID: 1, CreatedAt: now}, ds); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := a.Due(ctx, "ep", time.Time{}, now, 10, nil); len(got) != 3 {
		t.Fatalf("node a fetched %d", len(got))
	}
	return a, b, now
}

// A node that stops serving an endpoint hands its fetched deliveries back at once; another node
// takes them without waiting for their lease to end.
func TestReleaseHandsDeliveriesBack(t *testing.T) {
	a, b, now := twoNodesOneHolding(t, time.Minute)
	ctx := context.Background()
	if got, _, _ := b.Due(ctx, "ep", time.Time{}, now, 10, nil); len(got) != 0 {
		t.Fatalf("node b fetched %d held by node a", len(got))
	}
	a.Release("ep")
	waitDue(t, b, 3, 5*time.Second, "the released deliveries")
}

// Finished records expire after the retention, one by one; a held delivery does not (it is
// sent whenever its endpoint is enabled again).
func TestRetentionSparesHeldDeliveries(t *testing.T) {
	srv, err := StartServer(ServerOptions{Name: "n1", StoreDir: filepath.Join(t.TempDir(), "js"), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), Options{Server: srv, Logger: quiet(), Retention: 2 * time.Second})
	if err != nil {
		srv.Shutdown()
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	now := time.Now()
	mk := func(n int) store.Delivery {
		return store.Delivery{ID: store.NewID("msg_", now), EventID: fmt.Sprintf("evt_%d", n), Event: "call.completed",
			WorkspaceID: 1, EndpointID: "ep", NextAt: now, CreatedAt: now, Payload: []byte(`{}`)}
	}
	done, held := mk(1), mk(2)
	if err := s.Publish(ctx, store.EventRecord{ID: "evt_x", WorkspaceID: 1, CreatedAt: now}, []store.Delivery{done, held}); err != nil {
		t.Fatal(err)
	}
	ds, _, _ := s.Due(ctx, "ep", time.Time{}, now, 10, nil)
	if len(ds) != 2 {
		t.Fatalf("due %d", len(ds))
	}
	for _, d := range ds {
		if d.ID == held.ID {
			if err := s.Hold(ctx, d.ID, now); err != nil {
				t.Fatal(err)
			}
			continue
		}
		nd := d
		nd.Status, nd.Attempts = store.Success, 1
		if _, err := s.Complete(ctx, store.Outcome{Prev: d, Delivery: nd, Attempt: store.Attempt{N: 1, At: now, StatusCode: 200}, Now: now}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, err := s.Delivery(ctx, done.ID)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the finished record outlived its retention: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d, _, err := s.Delivery(ctx, held.ID); err != nil || d.Status != store.Held {
		t.Fatalf("held delivery: %+v %v", d, err)
	}
	// The event payloads expire too (a day after the retention): the held one keeps its own.
	if err := s.events.Purge(ctx, held.EventID); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Enable(ctx, "ep", time.Now()); err != nil || n != 1 {
		t.Fatalf("enable released %d: %v", n, err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		ds, _, _ := s.Due(ctx, "ep", time.Time{}, time.Now().Add(time.Second), 10, nil)
		if len(ds) == 1 && ds[0].ID == held.ID && string(ds[0].Payload) == `{}` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the released delivery is not due with its payload: %+v", ds)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A node's lease on the deliveries it fetched is renewed while their attempts run, however long
// (an endpoint may take minutes); once the node is gone the lease ends and another node sends
// them.
func TestLeaseIsRenewedWhileAttemptsRun(t *testing.T) {
	a, b, _ := twoNodesOneHolding(t, 1500*time.Millisecond)
	ctx := context.Background()
	// Nearly three leases long (renewed every third of one), node b gets none of them.
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if got, _, _ := b.Due(ctx, "ep", time.Time{}, time.Now(), 10, nil); len(got) != 0 {
			t.Fatalf("node b took %d deliveries node a is still sending", len(got))
		}
	}
	a.Close() // gone without a word: its lease runs out
	waitDue(t, b, 3, 10*time.Second, "the deliveries of the node that went away")
}

// waitDue reads endpoint "ep" on s until want deliveries are due there.
func waitDue(t *testing.T, s *Store, want int, within time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, _, _ := s.Due(context.Background(), "ep", time.Time{}, time.Now(), 10, nil)
		if len(got) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node b has %d of %s, want %d", len(got), what, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Every bucket is read from its stream's leader: a replica answering a direct get may lag the
// leader, and a stale read had dropped deliveries (a delivery's record read before its queue
// message, or a retried delivery's old status). A bucket made with direct gets on (as NATS's own
// tools make them) has them turned off when a node opens the store.
func TestBucketsAreReadFromTheLeader(t *testing.T) {
	srv, err := StartServer(ServerOptions{Name: "n1", Listen: "127.0.0.1:0", StoreDir: filepath.Join(t.TempDir(), "js"), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx := context.Background()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "rg_holds"}); err != nil {
		t.Fatal(err)
	}
	if st, _ := js.Stream(ctx, "KV_rg_holds"); !st.CachedInfo().Config.AllowDirect {
		t.Fatal("a bucket made by NATS's client has direct gets off: the test shows nothing")
	}
	s, err := Open(ctx, Options{URLs: []string{srv.ClientURL()}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	names := js.KeyValueStoreNames(ctx)
	n := 0
	for name := range names.Name() {
		info, err := js.Stream(ctx, "KV_"+name)
		if err != nil {
			t.Fatal(err)
		}
		if info.CachedInfo().Config.AllowDirect {
			t.Errorf("bucket %s answers direct gets: a replica may serve a stale read", name)
		}
		n++
	}
	if n < 8 {
		t.Fatalf("%d buckets, want the store's 8", n)
	}
}

// Package storetest is the conformance suite every store backend passes: the state transitions
// of deliveries, the breaker, held deliveries, listing and durability across reopening.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ringgate/ringgate/gateway/store"
)

// Opener opens the backend on dir (the same dir again for a reopen).
type Opener func(t *testing.T, dir string) store.Store

var t0 = time.Date(2026, 1, 15, 14, 30, 0, 0, time.UTC)

func delivery(ep string, at time.Time, i int) store.Delivery {
	return store.Delivery{
		ID: store.NewID("msg_", at), EventID: fmt.Sprintf("evt_%d", i), Event: "call.completed", WorkspaceID: 1,
		EndpointID: ep, NextAt: at, CreatedAt: at, UpdatedAt: at, Payload: []byte(fmt.Sprintf(`{"n":%d}`, i)),
	}
}

func publish(t *testing.T, s store.Store, ds ...store.Delivery) {
	t.Helper()
	if err := s.Publish(context.Background(), store.EventRecord{ID: store.NewID("evt_", t0), Type: "call.completed", WorkspaceID: 1, CreatedAt: t0}, ds); err != nil {
		t.Fatal(err)
	}
}

func complete(t *testing.T, s store.Store, prev store.Delivery, status store.Status, next time.Time, b store.BreakerChange, threshold int) *store.EndpointState {
	t.Helper()
	d := prev
	d.Status, d.Attempts, d.NextAt = status, prev.Attempts+1, next
	st, err := s.Complete(context.Background(), store.Outcome{
		Prev: prev, Delivery: d, Attempt: store.Attempt{N: d.Attempts, At: t0, StatusCode: 500, Error: "HTTP 500", Response: "nope"},
		Breaker: b, Threshold: threshold, Now: t0,
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// due reads an endpoint's due deliveries until at least want are there, for a second at most:
// a store may show a delivery a moment after the commit that queued it returned (a JetStream
// pull consumer learns of a new message asynchronously), which a lane's next read covers.
func due(t *testing.T, s store.Store, ep string, from, now time.Time, skip func(string) bool, want int) ([]store.Delivery, time.Time, error) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		ds, next, err := s.Due(context.Background(), ep, from, now, 10, skip)
		if err != nil || len(ds) >= want {
			return ds, next, err
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries due after a second, want %d", len(ds), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Run runs the suite.
func Run(t *testing.T, open Opener) {
	ctx := context.Background()
	t.Run("QueueOrderAndPayloads", func(t *testing.T) {
		s := open(t, t.TempDir())
		a, b, c := delivery("ep", t0.Add(2*time.Second), 1), delivery("ep", t0, 2), delivery("other", t0, 3)
		publish(t, s, a, b, c)
		ds, next, err := due(t, s, "ep", time.Time{}, t0.Add(time.Second), nil, 1)
		if err != nil || len(ds) != 1 || ds[0].ID != b.ID || string(ds[0].Payload) != `{"n":2}` || ds[0].Status != store.Pending {
			t.Fatalf("due at t0+1s: %+v %v", ds, err)
		}
		if !next.Equal(a.NextAt) {
			t.Fatalf("next %s, want %s", next, a.NextAt)
		}
		ds, _, _ = due(t, s, "ep", time.Time{}, t0.Add(time.Hour), func(id string) bool { return id == b.ID }, 1)
		if len(ds) != 1 || ds[0].ID != a.ID {
			t.Fatalf("skip: %+v", ds)
		}
		ds, _, _ = due(t, s, "ep", t0.Add(time.Second), t0.Add(time.Hour), nil, 1)
		if len(ds) != 1 || ds[0].ID != a.ID {
			t.Fatalf("from: %+v", ds)
		}
	})
	t.Run("RetryingThenFailedKeepsAttempts", func(t *testing.T) {
		s := open(t, t.TempDir())
		d := delivery("ep", t0, 1)
		publish(t, s, d)
		ds, _, _ := due(t, s, "ep", time.Time{}, t0, nil, 1)
		complete(t, s, ds[0], store.Retrying, t0.Add(30*time.Second), store.BreakerNone, 10)
		if ds, _, _ = s.Due(ctx, "ep", time.Time{}, t0.Add(29*time.Second), 10, nil); len(ds) != 0 {
			t.Fatal("retry came early")
		}
		ds, _, _ = due(t, s, "ep", time.Time{}, t0.Add(30*time.Second), nil, 1)
		if len(ds) != 1 || ds[0].Attempts != 1 || string(ds[0].Payload) != `{"n":1}` {
			t.Fatalf("retry: %+v", ds)
		}
		st := complete(t, s, ds[0], store.Failed, time.Time{}, store.BreakerFailure, 10)
		if st == nil || st.ConsecutiveFailures != 1 || !st.Enabled {
			t.Fatalf("breaker: %+v", st)
		}
		got, as, err := s.Delivery(ctx, d.ID)
		if err != nil || got.Status != store.Failed || len(as) != 2 || as[1].N != 2 || as[0].Response != "nope" || string(got.Payload) != `{"n":1}` {
			t.Fatalf("delivery %+v attempts %+v %v", got, as, err)
		}
		if ds, _, _ = s.Due(ctx, "ep", time.Time{}, t0.Add(time.Hour), 10, nil); len(ds) != 0 {
			t.Fatal("failed delivery still queued")
		}
		r, err := s.Retry(ctx, d.ID, t0.Add(time.Hour))
		if err != nil || r.Status != store.Pending || !r.Manual {
			t.Fatalf("retry: %+v %v", r, err)
		}
		if _, err := s.Retry(ctx, d.ID, t0); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("second retry: %v", err)
		}
		if ds, _, _ = due(t, s, "ep", time.Time{}, t0.Add(time.Hour), nil, 1); len(ds) != 1 || ds[0].Attempts != 2 {
			t.Fatalf("manual retry not queued: %+v", ds)
		}
		if _, _, err := s.Delivery(ctx, "msg_nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing delivery: %v", err)
		}
	})
	t.Run("BreakerHoldAndEnable", func(t *testing.T) {
		s := open(t, t.TempDir())
		for i := 0; i < 3; i++ {
			d := delivery("ep", t0, i)
			publish(t, s, d)
			ds, _, _ := due(t, s, "ep", time.Time{}, t0, nil, 1)
			st := complete(t, s, ds[0], store.Failed, time.Time{}, store.BreakerFailure, 3)
			if st.Enabled != (i < 2) {
				t.Fatalf("after %d failures: %+v", i+1, st)
			}
		}
		held := delivery("ep", t0, 9)
		publish(t, s, held)
		if d, _, _ := s.Delivery(ctx, held.ID); d.Status != store.Held {
			t.Fatalf("published to a disabled endpoint: %s", d.Status)
		}
		if ds, _, _ := s.Due(ctx, "ep", time.Time{}, t0.Add(time.Hour), 10, nil); len(ds) != 0 {
			t.Fatal("held delivery is queued")
		}
		counts, _ := s.Counts(ctx)
		if counts[store.Held] != 1 {
			t.Fatalf("counts %v", counts)
		}
		n, err := s.Enable(ctx, "ep", t0.Add(time.Minute))
		if err != nil || n != 1 {
			t.Fatalf("enable released %d: %v", n, err)
		}
		st, _ := s.Endpoint(ctx, "ep")
		if !st.Enabled || st.ConsecutiveFailures != 0 || !st.DisabledAt.IsZero() {
			t.Fatalf("after enable: %+v", st)
		}
		if ds, _, _ := due(t, s, "ep", time.Time{}, t0.Add(time.Minute), nil, 1); len(ds) != 1 || ds[0].ID != held.ID {
			t.Fatalf("released: %+v", ds)
		}
	})
	t.Run("HoldQueued", func(t *testing.T) {
		s := open(t, t.TempDir())
		d := delivery("ep", t0, 1)
		publish(t, s, d)
		if err := s.Hold(ctx, d.ID, t0); err != nil {
			t.Fatal(err)
		}
		if err := s.Hold(ctx, d.ID, t0); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("hold twice: %v", err)
		}
		if n, _ := s.Enable(ctx, "ep", t0); n != 1 {
			t.Fatalf("released %d", n)
		}
	})
	t.Run("ListNewestFirstWithFilters", func(t *testing.T) {
		s := open(t, t.TempDir())
		var ids []string
		for i := 0; i < 7; i++ {
			ep := "a"
			if i%2 == 1 {
				ep = "b"
			}
			d := delivery(ep, t0.Add(time.Duration(i)*time.Millisecond), i)
			ids = append(ids, d.ID)
			publish(t, s, d)
		}
		all, _ := s.Deliveries(ctx, store.DeliveryFilter{Limit: 3})
		if len(all) != 3 || all[0].ID != ids[6] || all[2].ID != ids[4] {
			t.Fatalf("page 1: %v", all)
		}
		page2, _ := s.Deliveries(ctx, store.DeliveryFilter{Limit: 3, Cursor: all[2].ID})
		if len(page2) != 3 || page2[0].ID != ids[3] {
			t.Fatalf("page 2: %v", page2)
		}
		bs, _ := s.Deliveries(ctx, store.DeliveryFilter{EndpointID: "b"})
		if len(bs) != 3 || bs[0].ID != ids[5] {
			t.Fatalf("endpoint b: %v", bs)
		}
		none, _ := s.Deliveries(ctx, store.DeliveryFilter{Status: store.Success})
		if len(none) != 0 {
			t.Fatalf("status filter: %v", none)
		}
	})
	t.Run("EndpointStateAndReopen", func(t *testing.T) {
		dir := t.TempDir()
		s := open(t, dir)
		if _, err := s.Endpoint(ctx, "ep"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing endpoint: %v", err)
		}
		st, err := s.UpdateEndpoint(ctx, "ep", func(st *store.EndpointState) error { st.Secret = "whsec_x"; return nil })
		if err != nil || !st.Enabled || st.ID != "ep" {
			t.Fatalf("update: %+v %v", st, err)
		}
		if _, err := s.UpdateEndpoint(ctx, "ep", func(*store.EndpointState) error { return errors.New("no") }); err == nil {
			t.Fatal("fn error lost")
		}
		d := delivery("ep", t0, 1)
		publish(t, s, d)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, dir)
		st, _ = s.Endpoint(ctx, "ep")
		if st.Secret != "whsec_x" {
			t.Fatalf("after reopen: %+v", st)
		}
		if ds, _, _ := due(t, s, "ep", time.Time{}, t0, nil, 1); len(ds) != 1 || ds[0].ID != d.ID {
			t.Fatalf("queue after reopen: %+v", ds)
		}
	})
	t.Run("CallCompareAndSetWithOutbox", func(t *testing.T) {
		s := open(t, t.TempDir())
		id1, err := s.NextCallLogID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		id2, _ := s.NextCallLogID(ctx)
		if id2 <= id1 || id1 <= 0 {
			t.Fatalf("call_log_ids %d then %d", id1, id2)
		}
		if known, err := s.CallerKnown(ctx, 1, "+15551230001"); err != nil || known {
			t.Fatalf("caller known before any call: %v %v", known, err)
		}
		c := store.CallLog{ID: id1, SID: "CA0001", WorkspaceID: 1, From: "+15551230001", Status: "ringing", StartedAt: t0}
		started := delivery("ep", t0, 1)
		saved, err := s.SaveCall(ctx, c, 0, store.Outbox{Deliveries: []store.Delivery{started}})
		if err != nil || saved.Version == 0 || saved.ID != id1 {
			t.Fatalf("create: %+v %v", saved, err)
		}
		if _, err := s.SaveCall(ctx, c, 0, store.Outbox{}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("second create: %v", err)
		}
		if known, _ := s.CallerKnown(ctx, 1, "+15551230001"); !known {
			t.Fatal("caller not known after a call")
		}
		if known, _ := s.CallerKnown(ctx, 2, "+15551230001"); known {
			t.Fatal("caller known in another workspace")
		}
		if ds, _, _ := due(t, s, "ep", time.Time{}, t0, nil, 1); len(ds) != 1 || ds[0].ID != started.ID {
			t.Fatalf("the call's outbox is not queued: %+v", ds)
		}
		upd := saved
		upd.Status = "completed"
		done := delivery("ep", t0, 2)
		v2, err := s.SaveCall(ctx, upd, saved.Version, store.Outbox{Deliveries: []store.Delivery{done}})
		if err != nil || v2.Version == saved.Version {
			t.Fatalf("update: %+v %v", v2, err)
		}
		// A stale version loses, and its outbox is not published.
		lost := delivery("ep", t0, 3)
		if _, err := s.SaveCall(ctx, upd, saved.Version, store.Outbox{Deliveries: []store.Delivery{lost}}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("stale update: %v", err)
		}
		if _, _, err := s.Delivery(ctx, lost.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a losing update's delivery exists: %v", err)
		}
		got, err := s.Call(ctx, "CA0001")
		if err != nil || got.Status != "completed" || got.Version != v2.Version {
			t.Fatalf("call: %+v %v", got, err)
		}
		if byID, err := s.CallByID(ctx, id1); err != nil || byID.SID != "CA0001" {
			t.Fatalf("by id: %+v %v", byID, err)
		}
		if _, err := s.Call(ctx, "CAnope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing call: %v", err)
		}
		other := store.CallLog{ID: id2, SID: "CA0002", WorkspaceID: 2, From: "+15551230002", StartedAt: t0}
		if _, err := s.SaveCall(ctx, other, 0, store.Outbox{}); err != nil {
			t.Fatal(err)
		}
		all, _ := s.Calls(ctx, store.CallFilter{})
		if len(all) != 2 || all[0].SID != "CA0002" {
			t.Fatalf("calls newest first: %+v", all)
		}
		ws1, _ := s.Calls(ctx, store.CallFilter{WorkspaceID: 1})
		if len(ws1) != 1 || ws1[0].SID != "CA0001" {
			t.Fatalf("workspace filter: %+v", ws1)
		}
		page2, _ := s.Calls(ctx, store.CallFilter{Cursor: id2})
		if len(page2) != 1 || page2[0].ID != id1 {
			t.Fatalf("cursor: %+v", page2)
		}
	})
	t.Run("Sessions", func(t *testing.T) {
		s := open(t, t.TempDir())
		now := time.Now()
		a := store.Session{ID: "s_a", WorkspaceID: 1, Number: "+15550001", Attribution: map[string]string{"utm_source": "google"}, CreatedAt: now, AssignedAt: now, HoldUntil: now.Add(time.Hour)}
		b := a
		b.ID, b.Number = "s_b", "+15550002"
		for _, ss := range []store.Session{a, b} {
			if err := s.PutSession(ctx, ss, store.SessionTTL(ss, now, time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		a.HoldUntil = now.Add(2 * time.Hour) // a heartbeat
		if err := s.PutSession(ctx, a, store.SessionTTL(a, now, time.Minute)); err != nil {
			t.Fatal(err)
		}
		got, err := s.Session(ctx, "s_a")
		if err != nil || !got.HoldUntil.Equal(a.HoldUntil) || got.Attribution["utm_source"] != "google" {
			t.Fatalf("session: %+v %v", got, err)
		}
		n := 0
		if err := s.Sessions(ctx, func(store.Session) error { n++; return nil }); err != nil || n != 2 {
			t.Fatalf("sessions: %d %v", n, err)
		}
		if _, err := s.Session(ctx, "s_nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing session: %v", err)
		}
	})
	t.Run("NumberHoldsCompareAndSet", func(t *testing.T) {
		s := open(t, t.TempDir())
		nh, ok := s.(store.NumberHolds)
		if !ok {
			t.Skip("a one-process store: pools live in memory")
		}
		hs, ver, err := nh.Holds(ctx, "+18005550001")
		if err != nil || len(hs) != 0 || ver != 0 {
			t.Fatalf("no holds yet: %v %d %v", hs, ver, err)
		}
		a := []store.Hold{{Session: "s_a", From: t0, Until: t0.Add(time.Hour)}}
		v1, err := nh.SetHolds(ctx, "+18005550001", a, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nh.SetHolds(ctx, "+18005550001", []store.Hold{{Session: "s_b"}}, 0); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("a second first hold: %v", err)
		}
		b := append(a, store.Hold{Session: "s_b", From: t0.Add(time.Hour), Until: t0.Add(2 * time.Hour)})
		if _, err := nh.SetHolds(ctx, "+18005550001", b, v1); err != nil {
			t.Fatal(err)
		}
		if _, err := nh.SetHolds(ctx, "+18005550001", a, v1); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("a stale version: %v", err)
		}
		hs, _, _ = nh.Holds(ctx, "+18005550001")
		if len(hs) != 2 || hs[1].Session != "s_b" || !hs[0].Until.Equal(t0.Add(time.Hour)) {
			t.Fatalf("holds: %+v", hs)
		}
	})
}

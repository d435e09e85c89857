package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ringgate/ringgate/gateway/store"
)

// record is a delivery as stored in rg_deliveries: its state and every attempt.
type record struct {
	D store.Delivery  `json:"d"`
	A []store.Attempt `json:"a,omitempty"`
	// P is the payload, kept in the record while the delivery is held: event payloads expire
	// with the retention, a held delivery does not.
	P []byte `json:"p,omitempty"`
}

// txn is one commit, written to RG_OUTBOX before anything else.
type txn struct {
	Tx   string `json:"tx"`
	Call string `json:"call,omitempty"` // the CallSid whose compare-and-set decides the commit
	// NewCall indexes a call stored for the first time.
	NewCall    *newCall          `json:"new_call,omitempty"`
	Payloads   map[string][]byte `json:"payloads"` // by event id
	Deliveries []store.Delivery  `json:"deliveries"`
}

type newCall struct {
	ID   int64  `json:"id"`
	SID  string `json:"sid"`
	WS   int64  `json:"ws"`
	From string `json:"from"`
}

func newTxn(call string, out store.Outbox) *txn {
	t := &txn{Tx: store.NewID("tx_", time.Now()), Call: call, Payloads: map[string][]byte{}, Deliveries: out.Deliveries}
	for _, d := range out.Deliveries {
		if _, ok := t.Payloads[d.EventID]; !ok {
			t.Payloads[d.EventID] = d.Payload
		}
	}
	for _, ev := range out.Events {
		if _, ok := t.Payloads[ev.ID]; !ok {
			t.Payloads[ev.ID] = ev.Payload
		}
	}
	return t
}

func queued(s store.Status) bool { return s == store.Pending || s == store.Retrying }

// msg is one publish of a batch; exists tolerates "already there" (re-applied commits).
type msg struct {
	m      *nats.Msg
	opts   []jetstream.PublishOpt
	exists bool
	queue  string // the endpoint of a queue message
}

func kvMsg(bucket, key string, data []byte) *nats.Msg {
	return &nats.Msg{Subject: "$KV." + bucket + "." + key, Data: data, Header: nats.Header{}}
}

// publishAll publishes a batch asynchronously and waits for every acknowledgement.
func (s *Store) publishAll(ctx context.Context, ms []msg) error {
	futs := make([]jetstream.PubAckFuture, len(ms))
	for i := range ms {
		f, err := s.js.PublishMsgAsync(ms[i].m, ms[i].opts...)
		if err != nil {
			return err
		}
		futs[i] = f
	}
	var first error
	for i, f := range futs {
		select {
		case ack := <-f.Ok():
			if ms[i].queue != "" {
				s.noteQueued(ms[i].queue, ack.Sequence)
			}
		case err := <-f.Err():
			if !(ms[i].exists && isConflict(err)) && first == nil {
				first = fmt.Errorf("publish %s: %w", ms[i].m.Subject, err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return first
}

// commit stores t in RG_OUTBOX: from here on it is durable. It returns the message's sequence.
func (s *Store) commit(ctx context.Context, t *txn) (uint64, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return 0, err
	}
	ack, err := s.js.Publish(ctx, outboxSubject, b, jetstream.WithMsgID(t.Tx))
	if err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	return ack.Sequence, nil
}

// apply writes a committed txn's records, then queues its deliveries. Applying twice is
// harmless: records are created only once and queue messages carry their delivery's id.
func (s *Store) apply(ctx context.Context, t *txn) error {
	var first, second []msg
	for id, p := range t.Payloads {
		first = append(first, msg{m: kvMsg("rg_events", id, p)})
	}
	held := make([]bool, len(t.Deliveries))
	for i := range t.Deliveries {
		d := t.Deliveries[i]
		d.Status, d.Payload = store.Pending, nil
		if !s.isEnabled(d.EndpointID) {
			d.Status, d.NextAt, held[i] = store.Held, time.Time{}, true
			first = append(first, msg{m: kvMsg("rg_index", heldKey(d.EndpointID, d.ID), nil)})
		}
		rec := record{D: d}
		if held[i] {
			rec.P = t.Payloads[d.EventID]
		}
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		first = append(first, msg{m: kvMsg("rg_deliveries", d.ID, b), opts: []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(0)}, exists: true})
	}
	if c := t.NewCall; c != nil {
		first = append(first,
			msg{m: kvMsg("rg_index", callKey(c.ID), []byte(c.SID))},
			msg{m: kvMsg("rg_index", callerKey(c.WS, c.From), nil)})
	}
	if err := s.publishAll(ctx, first); err != nil {
		return err
	}
	for i, d := range t.Deliveries {
		if !held[i] {
			second = append(second, s.queueMsg(d.EndpointID, d.ID, d.ID+".0"))
		}
	}
	return s.publishAll(ctx, second)
}

func (s *Store) queueMsg(ep, id, msgID string) msg {
	return msg{m: &nats.Msg{Subject: queueSubject + token(ep), Data: []byte(id)}, opts: []jetstream.PublishOpt{jetstream.WithMsgID(msgID)}, queue: ep}
}

// noteQueued records the stream sequence of a queue message this node published for ep.
func (s *Store) noteQueued(ep string, seq uint64) {
	v, _ := s.queuedSeq.LoadOrStore(ep, new(atomic.Uint64))
	last := v.(*atomic.Uint64)
	for cur := last.Load(); seq > cur && !last.CompareAndSwap(cur, seq); cur = last.Load() {
	}
}

// lastQueued is the stream sequence of the last queue message this node published for ep.
func (s *Store) lastQueued(ep string) uint64 {
	if v, ok := s.queuedSeq.Load(ep); ok {
		return v.(*atomic.Uint64).Load()
	}
	return 0
}

func heldKey(ep, id string) string { return "held." + token(ep) + "." + id }

// finish applies a committed txn and removes it from the outbox; if applying fails, the
// outbox applier of some node does it later.
func (s *Store) finish(ctx context.Context, t *txn, seq uint64) {
	if err := s.apply(ctx, t); err != nil {
		s.opt.Logger.Warn("apply commit (the outbox applier will retry)", "tx", t.Tx, "err", err)
		return
	}
	if err := s.outbox.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		s.opt.Logger.Debug("delete applied commit", "tx", t.Tx, "err", err)
	}
}

// applierGrace is how old a commit must be before the applier takes it over from its writer;
// casWindow is how long a call's commit may wait for its compare-and-set to show.
var (
	applierGrace = 2 * time.Second
	casWindow    = 30 * time.Second
)

// applier applies commits whose writer died before applying them.
func (s *Store) applier() {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-s.stop; cancel() }()
	var cons jetstream.Consumer
	for cons == nil {
		c, err := s.outbox.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable: "apply", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: -1,
		})
		if err == nil {
			cons = c
			break
		}
		select {
		case <-s.stop:
			return
		case <-time.After(time.Second):
		}
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { s.recoverCommit(ctx, m) }, jetstream.PullMaxMessages(32))
	if err != nil {
		s.opt.Logger.Error("outbox applier", "err", err)
		return
	}
	<-s.stop
	cc.Stop()
}

func (s *Store) recoverCommit(ctx context.Context, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		m.Term()
		return
	}
	if age := time.Since(md.Timestamp); age < applierGrace {
		m.NakWithDelay(applierGrace - age)
		return
	}
	var t txn
	if err := json.Unmarshal(m.Data(), &t); err != nil {
		s.opt.Logger.Error("outbox: undecodable commit dropped", "seq", md.Sequence.Stream, "err", err)
		m.Term()
		return
	}
	if t.Call != "" {
		// The commit counts only if its call's compare-and-set went through.
		v, _, err := s.getCall(ctx, t.Call)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			m.NakWithDelay(time.Second)
			return
		}
		if err != nil || !slices.Contains(v.Txs, t.Tx) {
			if time.Since(md.Timestamp) < casWindow {
				m.NakWithDelay(casWindow / 6) // the writer may still be on its way
				return
			}
			m.Ack() // lost its compare-and-set: nothing to apply
			return
		}
	}
	if err := s.apply(ctx, &t); err != nil {
		s.opt.Logger.Warn("outbox: apply commit", "tx", t.Tx, "err", err)
		m.NakWithDelay(time.Second)
		return
	}
	s.opt.Logger.Info("outbox: applied a commit its writer left", "tx", t.Tx, "deliveries", len(t.Deliveries))
	m.Ack()
}

func (s *Store) Publish(ctx context.Context, ev store.EventRecord, ds []store.Delivery) error {
	t := newTxn("", store.Outbox{Events: []store.EventRecord{ev}, Deliveries: ds})
	seq, err := s.commit(ctx, t)
	if err != nil {
		return err
	}
	s.finish(ctx, t, seq)
	return nil
}

// lane is this node's view of one endpoint's queue: the durable consumer shared by all nodes and
// the messages this node fetched and holds (until their outcome, or their due time).
type lane struct {
	s    *Store
	ep   string
	cons jetstream.Consumer

	mu    sync.Mutex
	local map[string]*entry
	// lastDue is when this node's engine last read the lane or completed an attempt on it
	// (Unix ns): a lane it stopped using (the endpoint left its config) no longer renews its
	// messages.
	lastDue atomic.Int64
	// seen is the highest stream sequence this lane fetched or waited for.
	seen atomic.Uint64
}

type entry struct {
	msg     jetstream.Msg
	seq     uint64
	d       store.Delivery
	payload []byte
	seen    bool // returned by Due at least once
	// attempts and rev are the record as read, so Complete can write without reading again
	attempts []store.Attempt
	rev      uint64
	ownP     bool // the payload came from the record (P), which keeps it
}

func (s *Store) lane(ctx context.Context, ep string) (*lane, error) {
	s.mu.Lock()
	l := s.lanes[ep]
	s.mu.Unlock()
	if l != nil {
		return l, nil
	}
	cons, err := s.queue.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "q_" + token(ep), FilterSubject: queueSubject + token(ep), AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: s.opt.AckWait, MaxDeliver: -1, MaxAckPending: 1 << 20, MaxRequestBatch: 1024,
	})
	if err != nil {
		return nil, fmt.Errorf("queue consumer for %s: %w", ep, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if l = s.lanes[ep]; l == nil {
		l = &lane{s: s, ep: ep, cons: cons, local: map[string]*entry{}}
		l.lastDue.Store(time.Now().UnixNano())
		s.lanes[ep] = l
	}
	return l, nil
}

// orphanAfter is how long a lane may go unread before its messages are handed back.
const orphanAfter = 5 * time.Minute

// renew extends the lease of every held message, or hands them all back when the engine has
// not read the lane for orphanAfter.
func (l *lane) renew() {
	if time.Since(time.Unix(0, l.lastDue.Load())) > orphanAfter {
		l.s.Release(l.ep)
		return
	}
	l.mu.Lock()
	ms := make([]jetstream.Msg, 0, len(l.local))
	for _, e := range l.local {
		ms = append(ms, e.msg)
	}
	l.mu.Unlock()
	for _, m := range ms {
		m.InProgress()
	}
}

// fetch takes whatever the consumer has for this node now.
func (l *lane) fetch(ctx context.Context) error {
	const batchSize = 256
	fetched := 0
	for {
		batch, err := l.cons.FetchNoWait(batchSize)
		if err != nil {
			return err
		}
		got, err := l.collect(batch)
		if err != nil {
			return err
		}
		fetched += len(got)
		if len(got) > 0 {
			l.take(ctx, got)
		}
		if len(got) < batchSize {
			break
		}
	}
	// The consumer learns of a new message a moment after the stream stored it, so a read right
	// after this node queued a delivery can find nothing, and the engine's lane would not read
	// again until something else woke it. Once per message this node queued and has not seen,
	// give the consumer a moment.
	if q := l.s.lastQueued(l.ep); fetched == 0 && q > l.seen.Load() {
		l.seen.Store(q)
		// one message: a fetch returns when its batch is full or its wait is over
		batch, err := l.cons.Fetch(1, jetstream.FetchMaxWait(20*time.Millisecond))
		if err != nil {
			return err
		}
		got, err := l.collect(batch)
		if err != nil {
			return err
		}
		if len(got) > 0 {
			l.take(ctx, got)
			return l.fetch(ctx) // and the rest
		}
	}
	return nil
}

// collect drains a fetch, noting the highest stream sequence seen.
func (l *lane) collect(batch jetstream.MessageBatch) ([]jetstream.Msg, error) {
	var got []jetstream.Msg
	for m := range batch.Messages() {
		got = append(got, m)
		if md, err := m.Metadata(); err == nil && md.Sequence.Stream > l.seen.Load() {
			l.seen.Store(md.Sequence.Stream)
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
		return nil, err
	}
	return got, nil
}

// take loads the records of fetched messages (in parallel) and keeps those still queued.
func (l *lane) take(ctx context.Context, ms []jetstream.Msg) {
	type loaded struct {
		e   *entry
		err error
	}
	res := make([]loaded, len(ms))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i, m := range ms {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			md, err := m.Metadata()
			if err != nil {
				res[i].err = err
				return
			}
			rec, rev, err := l.s.getRecord(ctx, string(m.Data()))
			if err != nil {
				res[i].err = err
				return
			}
			e := &entry{msg: m, seq: md.Sequence.Stream, d: rec.D, attempts: rec.A, rev: rev, payload: rec.P, ownP: rec.P != nil}
			if queued(rec.D.Status) && e.payload == nil {
				p, err := l.s.events.Get(ctx, rec.D.EventID)
				if err != nil {
					res[i].err = notFound(err)
					return
				}
				e.payload = p.Value()
			}
			res[i].e = e
		}()
	}
	wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, r := range res {
		m := ms[i]
		switch {
		case errors.Is(r.err, store.ErrNotFound):
			if md, err := m.Metadata(); err == nil && time.Since(md.Timestamp) < time.Minute {
				m.NakWithDelay(time.Second) // its record is on its way (a commit being applied)
			} else {
				m.Ack() // its record expired or never was: nothing to send
			}
			continue
		case r.err != nil:
			m.Nak() // try again later
			continue
		case !queued(r.e.d.Status):
			m.Ack() // held, finished or failed meanwhile
			continue
		}
		id := r.e.d.ID
		if cur, ok := l.local[id]; ok {
			if cur.seq == r.e.seq {
				cur.msg = m // the same message again (its lease ran out): keep the newer handle
			} else {
				m.Ack() // a second message for a delivery already held here
			}
			continue
		}
		l.local[id] = r.e
	}
}

func (s *Store) getRecord(ctx context.Context, id string) (record, uint64, error) {
	return getJSON[record](ctx, s.deliveries, id, "delivery "+id)
}

// updateRecord applies fn to a delivery's record with compare-and-set, retrying on conflict.
func (s *Store) updateRecord(ctx context.Context, id string, fn func(*record) error) (record, uint64, error) {
	for {
		r, rev, err := s.getRecord(ctx, id)
		if err != nil {
			return r, 0, err
		}
		if err := fn(&r); err != nil {
			return r, 0, err
		}
		rev, err = s.putRecord(ctx, &r, rev)
		if isConflict(err) {
			continue
		}
		return r, rev, err
	}
}

// putRecord writes a record if its revision is still rev. A finished record is kept for the
// retention; a queued or held one has no expiry (a delivery held for months is still sent
// once its endpoint is enabled), as in the Badger store.
func (s *Store) putRecord(ctx context.Context, r *record, rev uint64) (uint64, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(rev)}
	if r.D.Status.Final() {
		opts = append(opts, jetstream.WithMsgTTL(s.opt.Retention))
	}
	ack, err := s.js.PublishMsg(ctx, kvMsg("rg_deliveries", r.D.ID, b), opts...)
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

func (s *Store) Due(ctx context.Context, endpointID string, from, now time.Time, limit int, skip func(string) bool) ([]store.Delivery, time.Time, error) {
	l, err := s.lane(ctx, endpointID)
	if err != nil {
		return nil, time.Time{}, err
	}
	l.lastDue.Store(time.Now().UnixNano())
	if err := l.fetch(ctx); err != nil {
		return nil, time.Time{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var due []*entry
	var next time.Time
	for id, e := range l.local {
		at := e.d.NextAt
		switch {
		case at.After(now):
			if next.IsZero() || at.Before(next) {
				next = at
			}
		case !from.IsZero() && at.Before(from) && e.seen:
			// from is the lane's cursor: it skips what it read before. Other nodes publish
			// with their own clocks, so a delivery new to this node may sort behind it.
		case skip != nil && skip(id):
		default:
			due = append(due, e)
		}
	}
	slices.SortFunc(due, func(a, b *entry) int {
		if c := a.d.NextAt.Compare(b.d.NextAt); c != 0 {
			return c
		}
		return strings.Compare(a.d.ID, b.d.ID)
	})
	if len(due) > limit {
		due, next = due[:limit], now
	}
	out := make([]store.Delivery, len(due))
	for i, e := range due {
		e.seen = true
		out[i] = e.d
		out[i].Payload = e.payload
	}
	return out, next, nil
}

func (s *Store) Complete(ctx context.Context, o store.Outcome) (*store.EndpointState, error) {
	d := o.Delivery
	d.Payload, d.UpdatedAt = nil, o.Now
	if !queued(d.Status) {
		d.NextAt = time.Time{}
	}
	l, err := s.lane(ctx, d.EndpointID)
	if err != nil {
		return nil, err
	}
	l.lastDue.Store(time.Now().UnixNano())
	// The record as this node read it: written with compare-and-set on that revision, without
	// another read; if it changed meanwhile, read it again.
	l.mu.Lock()
	var known *record
	var rev uint64
	if e := l.local[d.ID]; e != nil && e.rev != 0 {
		known, rev = &record{D: d, A: append(slices.Clip(e.attempts), o.Attempt)}, e.rev
		if e.ownP {
			known.P = e.payload
		}
	}
	l.mu.Unlock()
	written := false
	if known != nil {
		var err error
		if rev, err = s.putRecord(ctx, known, rev); err == nil {
			written = true
		} else if !isConflict(err) {
			return nil, err
		}
	}
	if !written {
		r, newRev, err := s.updateRecord(ctx, d.ID, func(r *record) error {
			r.D = d
			r.A = append(r.A, o.Attempt)
			return nil
		})
		if err != nil {
			return nil, err
		}
		known, rev = &r, newRev
	}
	st, changed, err := s.breaker(ctx, d.EndpointID, o)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	e := l.local[d.ID]
	switch {
	case e == nil:
		l.mu.Unlock()
		if queued(d.Status) { // its message is gone (a lease lost to another node): queue it again
			if err := s.publishAll(ctx, []msg{s.queueMsg(d.EndpointID, d.ID, fmt.Sprintf("%s.a%d", d.ID, d.Attempts))}); err != nil {
				return nil, err
			}
		}
	case !queued(d.Status):
		delete(l.local, d.ID)
		l.mu.Unlock()
		e.msg.Ack()
	case d.NextAt.Sub(o.Now) <= s.opt.Horizon:
		// a short wait: this node keeps the message until it is due
		e.d, e.seen, e.attempts, e.rev = d, false, known.A, rev
		l.mu.Unlock()
	default:
		delete(l.local, d.ID)
		l.mu.Unlock()
		e.msg.NakWithDelay(d.NextAt.Sub(o.Now))
	}
	if !changed {
		return nil, nil
	}
	return &st, nil
}

// breaker applies an outcome to the endpoint's failure count with compare-and-set, so failures
// counted on different nodes add up.
func (s *Store) breaker(ctx context.Context, ep string, o store.Outcome) (store.EndpointState, bool, error) {
	if o.Breaker == store.BreakerNone {
		return store.EndpointState{}, false, nil
	}
	changed := false
	st, err := s.UpdateEndpoint(ctx, ep, func(st *store.EndpointState) error {
		if changed = o.ApplyBreaker(st); !changed {
			return errUnchanged
		}
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return st, false, nil
	}
	return st, changed, err
}

var errUnchanged = errors.New("unchanged")

func (s *Store) dropLocal(ep, id string) {
	s.mu.Lock()
	l := s.lanes[ep]
	s.mu.Unlock()
	if l == nil {
		return
	}
	l.mu.Lock()
	e := l.local[id]
	delete(l.local, id)
	l.mu.Unlock()
	if e != nil {
		e.msg.Ack()
	}
}

func (s *Store) Hold(ctx context.Context, id string, now time.Time) error {
	r, _, err := s.updateRecord(ctx, id, func(r *record) error {
		if !queued(r.D.Status) {
			return store.ErrConflict
		}
		if r.P == nil {
			p, err := s.events.Get(ctx, r.D.EventID)
			if err != nil {
				return notFound(err)
			}
			r.P = p.Value()
		}
		r.D.Status, r.D.NextAt, r.D.UpdatedAt = store.Held, time.Time{}, now
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := s.index.Put(ctx, heldKey(r.D.EndpointID, id), nil); err != nil {
		return err
	}
	s.dropLocal(r.D.EndpointID, id)
	return nil
}

func (s *Store) Retry(ctx context.Context, id string, now time.Time) (store.Delivery, error) {
	r, _, err := s.updateRecord(ctx, id, func(r *record) error {
		if r.D.Status != store.Failed {
			return store.ErrConflict
		}
		r.D.Status, r.D.Manual, r.D.NextAt, r.D.UpdatedAt = store.Pending, true, now, now
		return nil
	})
	if err != nil {
		return r.D, err
	}
	if err := s.publishAll(ctx, []msg{s.queueMsg(r.D.EndpointID, id, fmt.Sprintf("%s.m%d", id, r.D.Attempts))}); err != nil {
		return r.D, err
	}
	return r.D, nil
}

func (s *Store) Enable(ctx context.Context, endpointID string, now time.Time) (int, error) {
	if _, err := s.UpdateEndpoint(ctx, endpointID, func(st *store.EndpointState) error {
		st.Enabled, st.ConsecutiveFailures, st.DisabledAt = true, 0, time.Time{}
		return nil
	}); err != nil {
		return 0, err
	}
	prefix := "held." + token(endpointID) + "."
	keys, err := s.keys(ctx, s.index, prefix+"*")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, k := range keys {
		id := strings.TrimPrefix(k, prefix)
		_, rev, err := s.updateRecord(ctx, id, func(r *record) error {
			if r.D.Status != store.Held {
				return store.ErrConflict
			}
			r.D.Status, r.D.NextAt, r.D.UpdatedAt = store.Pending, now, now
			return nil
		})
		switch {
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict):
		case err != nil:
			return n, err
		default:
			if err := s.publishAll(ctx, []msg{s.queueMsg(endpointID, id, fmt.Sprintf("%s.e%d", id, rev))}); err != nil {
				return n, err
			}
			n++
		}
		if err := s.index.Delete(ctx, k); err != nil {
			return n, err
		}
	}
	return n, nil
}

// keys lists a bucket's keys matching filter, sorted (none: an empty list).
func (s *Store) keys(ctx context.Context, kv jetstream.KeyValue, filter string) ([]string, error) {
	kl, err := kv.ListKeysFiltered(ctx, filter)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer kl.Stop()
	var out []string
	for k := range kl.Keys() {
		out = append(out, k)
	}
	slices.Sort(out)
	return out, nil
}

func (s *Store) Endpoint(ctx context.Context, id string) (store.EndpointState, error) {
	st, _, err := getJSON[store.EndpointState](ctx, s.endpoints, token(id), "endpoint "+id)
	return st, err
}

func (s *Store) UpdateEndpoint(ctx context.Context, id string, fn func(*store.EndpointState) error) (store.EndpointState, error) {
	for {
		st, rev, err := getJSON[store.EndpointState](ctx, s.endpoints, token(id), "endpoint "+id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			st, rev = store.EndpointState{ID: id, Enabled: true}, 0
		case err != nil:
			return st, err
		}
		if err := fn(&st); err != nil {
			return st, err
		}
		b, err := json.Marshal(&st)
		if err != nil {
			return st, err
		}
		if rev == 0 {
			_, err = s.endpoints.Create(ctx, token(id), b)
		} else {
			_, err = s.endpoints.Update(ctx, token(id), b, rev)
		}
		if isConflict(err) {
			continue
		}
		if err == nil {
			s.setEnabled(id, st.Enabled)
		}
		return st, err
	}
}

func (s *Store) endpointChanged(e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		return
	}
	var st store.EndpointState
	if json.Unmarshal(e.Value(), &st) != nil || st.ID == "" {
		return
	}
	s.setEnabled(st.ID, st.Enabled)
	s.hookMu.RLock()
	fn := s.onEndpoint
	s.hookMu.RUnlock()
	if fn != nil {
		fn(st)
	}
}

func (s *Store) setEnabled(id string, on bool) {
	s.enabledMu.Lock()
	s.enabled[id] = on
	s.enabledMu.Unlock()
}

func (s *Store) isEnabled(id string) bool {
	s.enabledMu.RLock()
	on, ok := s.enabled[id]
	s.enabledMu.RUnlock()
	return on || !ok
}

func (s *Store) Delivery(ctx context.Context, id string) (store.Delivery, []store.Attempt, error) {
	r, _, err := s.getRecord(ctx, id)
	if err != nil {
		return store.Delivery{}, nil, err
	}
	r.D.Payload = r.P
	if r.P == nil {
		if p, err := s.events.Get(ctx, r.D.EventID); err == nil {
			r.D.Payload = p.Value()
		}
	}
	return r.D, r.A, nil
}

// Deliveries lists newest first. Ids sort by time, so the key list sorted backwards is the
// order; records are read until the page is full.
func (s *Store) Deliveries(ctx context.Context, f store.DeliveryFilter) ([]store.Delivery, error) {
	keys, err := s.keys(ctx, s.deliveries, ">")
	if err != nil {
		return nil, err
	}
	return newestFirst(keys, f.Cursor, store.PageLimit(f.Limit), func(key string) (store.Delivery, bool, error) {
		r, _, err := s.getRecord(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return r.D, false, nil
		}
		d := r.D
		keep := (f.EndpointID == "" || d.EndpointID == f.EndpointID) && (f.Status == "" || d.Status == f.Status) && (f.Event == "" || d.Event == f.Event)
		return d, keep, err
	})
}

// newestFirst reads the values of sorted keys from the last, skipping keys at or after cursor
// (the last key of the previous page), until limit values are kept.
func newestFirst[T any](keys []string, cursor string, limit int, get func(key string) (v T, keep bool, err error)) ([]T, error) {
	var out []T
	for i := len(keys) - 1; i >= 0 && len(out) < limit; i-- {
		if cursor != "" && keys[i] >= cursor {
			continue
		}
		v, keep, err := get(keys[i])
		if err != nil {
			return nil, err
		}
		if keep {
			out = append(out, v)
		}
	}
	return out, nil
}

// Counts reports the queue's messages as pending (retrying ones among them) and the held
// deliveries.
func (s *Store) Counts(ctx context.Context) (map[store.Status]int, error) {
	out := map[store.Status]int{store.Pending: 0, store.Held: 0}
	info, err := s.queue.Info(ctx)
	if err != nil {
		return out, err
	}
	out[store.Pending] = int(info.State.Msgs)
	keys, err := s.keys(ctx, s.index, "held.>")
	if err != nil {
		return out, err
	}
	out[store.Held] = len(keys)
	return out, nil
}

var _ store.Releaser = (*Store)(nil)

// Release hands the endpoint's held messages back to the server at once (Nak) and forgets the
// lane: the endpoint left this node's config.
func (s *Store) Release(endpointID string) {
	s.mu.Lock()
	l := s.lanes[endpointID]
	delete(s.lanes, endpointID)
	s.mu.Unlock()
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, e := range l.local {
		e.msg.Nak()
		delete(l.local, id)
	}
}

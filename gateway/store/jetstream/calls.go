package jetstream

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ringgate/ringgate/gateway/store"
)

// callValue is a call log as stored in rg_calls, with the commits its versions made: a commit
// left in the outbox by a node that died is applied only if its id is here.
type callValue struct {
	Call store.CallLog `json:"c"`
	Txs  []string      `json:"t"`
}

const keepTxs = 16

func callKey(id int64) string { return fmt.Sprintf("call.%020d", id) }
func callerKey(ws int64, from string) string {
	return "caller." + strconv.FormatInt(ws, 10) + "." + hex.EncodeToString([]byte(from))
}

func (s *Store) getCall(ctx context.Context, sid string) (callValue, uint64, error) {
	v, rev, err := getJSON[callValue](ctx, s.calls, sid, "call "+sid)
	if err != nil {
		return callValue{}, 0, err
	}
	v.Call.Version = rev
	return v, rev, nil
}

func (s *Store) Call(ctx context.Context, sid string) (store.CallLog, error) {
	v, _, err := s.getCall(ctx, sid)
	return v.Call, err
}

func (s *Store) CallByID(ctx context.Context, id int64) (store.CallLog, error) {
	e, err := s.index.Get(ctx, callKey(id))
	if err != nil {
		return store.CallLog{}, notFound(err)
	}
	return s.Call(ctx, string(e.Value()))
}

func (s *Store) Calls(ctx context.Context, f store.CallFilter) ([]store.CallLog, error) {
	keys, err := s.keys(ctx, s.index, "call.*")
	if err != nil {
		return nil, err
	}
	var cursor string
	if f.Cursor > 0 {
		cursor = callKey(f.Cursor) // ids are zero-padded: keys sort as the ids do
	}
	return newestFirst(keys, cursor, store.PageLimit(f.Limit), func(key string) (store.CallLog, bool, error) {
		id, _ := strconv.ParseInt(strings.TrimPrefix(key, "call."), 10, 64)
		c, err := s.CallByID(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return c, false, nil
		}
		return c, f.WorkspaceID == 0 || c.WorkspaceID == f.WorkspaceID, err
	})
}

// NextCallLogID takes the next sequence number of RG_IDS: increasing and unique across nodes.
func (s *Store) NextCallLogID(ctx context.Context) (int64, error) {
	ack, err := s.js.Publish(ctx, idsSubject, nil)
	if err != nil {
		return 0, fmt.Errorf("next call_log_id: %w", err)
	}
	return int64(ack.Sequence), nil
}

// SaveCall commits the outbox first, then moves the call with compare-and-set on its revision,
// then applies the outbox. A node that dies between the two leaves a commit the outbox
// applier finds; it applies it only if the call's value names it.
func (s *Store) SaveCall(ctx context.Context, c store.CallLog, expect uint64, out store.Outbox) (store.CallLog, error) {
	var cur callValue
	if expect != 0 {
		v, rev, err := s.getCall(ctx, c.SID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return c, fmt.Errorf("%w: call %s does not exist", store.ErrConflict, c.SID)
		case err != nil:
			return c, err
		case rev != expect:
			return c, fmt.Errorf("%w: call %s is at version %d, not %d", store.ErrConflict, c.SID, rev, expect)
		}
		cur = v
		c.ID = v.Call.ID
	} else if c.ID <= 0 {
		return c, errors.New("a new call needs its call_log_id (NextCallLogID)")
	}
	t := newTxn(c.SID, out)
	if expect == 0 {
		t.NewCall = &newCall{ID: c.ID, SID: c.SID, WS: c.WorkspaceID, From: c.From}
	}
	seq, err := s.commit(ctx, t)
	if err != nil {
		return c, err
	}
	txs := append(cur.Txs, t.Tx)
	if len(txs) > keepTxs {
		txs = txs[len(txs)-keepTxs:]
	}
	c.Version = 0
	b, err := json.Marshal(callValue{Call: c, Txs: txs})
	if err != nil {
		return c, err
	}
	var rev uint64
	if expect == 0 {
		rev, err = s.calls.Create(ctx, c.SID, b)
	} else {
		rev, err = s.calls.Update(ctx, c.SID, b, expect)
	}
	if isConflict(err) {
		if derr := s.outbox.DeleteMsg(ctx, seq); derr != nil {
			s.opt.Logger.Debug("delete losing commit", "tx", t.Tx, "err", derr)
		}
		return c, fmt.Errorf("%w: call %s changed meanwhile", store.ErrConflict, c.SID)
	}
	if err != nil {
		return c, err // the applier decides from the call's value whether the commit counts
	}
	c.Version = rev
	s.finish(ctx, t, seq)
	return c, nil
}

func (s *Store) CallerKnown(ctx context.Context, ws int64, from string) (bool, error) {
	_, err := s.index.Get(ctx, callerKey(ws, from))
	if err = notFound(err); errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// sessions

func (s *Store) PutSession(ctx context.Context, ss store.Session, ttl time.Duration) error {
	b, err := json.Marshal(&ss)
	if err != nil {
		return err
	}
	ttl = max(ttl, time.Second).Round(time.Second)
	_, err = s.js.PublishMsg(ctx, kvMsg("rg_sessions", ss.ID, b), jetstream.WithMsgTTL(ttl))
	return err
}

func (s *Store) Session(ctx context.Context, id string) (store.Session, error) {
	ss, _, err := getJSON[store.Session](ctx, s.sessions, id, "session "+id)
	return ss, err
}

func (s *Store) Sessions(ctx context.Context, fn func(store.Session) error) error {
	keys, err := s.keys(ctx, s.sessions, ">")
	if err != nil {
		return err
	}
	for _, k := range keys {
		ss, err := s.Session(ctx, k)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if err := fn(ss); err != nil {
			return err
		}
	}
	return nil
}

// holds: rg_holds keys are the number's digits.

func holdsKey(number string) string { return "n" + strings.TrimPrefix(number, "+") }

func (s *Store) Holds(ctx context.Context, number string) ([]store.Hold, uint64, error) {
	hs, rev, err := getJSON[[]store.Hold](ctx, s.holds, holdsKey(number), "holds of "+number)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, nil
	}
	return hs, rev, err
}

func (s *Store) SetHolds(ctx context.Context, number string, hs []store.Hold, expect uint64) (uint64, error) {
	b, err := json.Marshal(hs)
	if err != nil {
		return 0, err
	}
	var rev uint64
	if expect == 0 {
		rev, err = s.holds.Create(ctx, holdsKey(number), b)
	} else {
		rev, err = s.holds.Update(ctx, holdsKey(number), b, expect)
	}
	if isConflict(err) {
		return 0, store.ErrConflict
	}
	return rev, err
}

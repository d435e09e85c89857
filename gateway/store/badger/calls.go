package badger

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	bdb "github.com/dgraph-io/badger/v4"
	"github.com/ringgate/ringgate/gateway/store"
)

// Call keys:
//
//	c/<call sid>                  call log (JSON)
//	cl/<call_log_id uint64>       call sid
//	cf/<workspace uint64><from>   a caller who has called the workspace before
//	seq/call_log_id               the Badger sequence of call_log_ids
func keyCall(sid string) []byte { return append([]byte("c/"), sid...) }
func keyCallID(id int64) []byte { return binary.BigEndian.AppendUint64([]byte("cl/"), uint64(id)) }
func keyCaller(ws int64, from string) []byte {
	return append(binary.BigEndian.AppendUint64([]byte("cf/"), uint64(ws)), from...)
}

var keyCallSeq = []byte("seq/call_log_id")

// NextCallLogID leases ids from a Badger sequence in blocks of 32; ids of a block not used before
// a restart are skipped.
func (s *Store) NextCallLogID(ctx context.Context) (int64, error) {
	s.seqOnce.Do(func() { s.seq, s.seqErr = s.db.GetSequence(keyCallSeq, 32) })
	if s.seqErr != nil {
		return 0, s.seqErr
	}
	n, err := s.seq.Next()
	return int64(n) + 1, err // sequences start at 0; call_log_id starts at 1
}

var _ store.CallStore = (*Store)(nil)

func getCall(txn *bdb.Txn, sid string) (store.CallLog, error) {
	var c store.CallLog
	err := getJSON(txn, keyCall(sid), &c)
	return c, err
}

func (s *Store) Call(ctx context.Context, sid string) (store.CallLog, error) {
	var c store.CallLog
	err := s.db.View(func(txn *bdb.Txn) error {
		var err error
		c, err = getCall(txn, sid)
		return err
	})
	return c, err
}

func (s *Store) CallByID(ctx context.Context, id int64) (store.CallLog, error) {
	var c store.CallLog
	err := s.db.View(func(txn *bdb.Txn) error {
		sid, err := getBytes(txn, keyCallID(id))
		if err != nil {
			return err
		}
		c, err = getCall(txn, string(sid))
		return err
	})
	return c, err
}

func (s *Store) Calls(ctx context.Context, f store.CallFilter) ([]store.CallLog, error) {
	f.Limit = store.PageLimit(f.Limit)
	var out []store.CallLog
	err := s.db.View(func(txn *bdb.Txn) error {
		prefix := []byte("cl/")
		it := txn.NewIterator(bdb.IteratorOptions{Prefix: prefix, Reverse: true, PrefetchValues: true})
		defer it.Close()
		start := append(append([]byte{}, prefix...), 0xFF)
		if f.Cursor > 0 {
			start = keyCallID(f.Cursor - 1)
		}
		for it.Seek(start); it.ValidForPrefix(prefix) && len(out) < f.Limit; it.Next() {
			sid, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			c, err := getCall(txn, string(sid))
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if f.WorkspaceID != 0 && c.WorkspaceID != f.WorkspaceID {
				continue
			}
			out = append(out, c)
		}
		return nil
	})
	return out, err
}

func (s *Store) SaveCall(ctx context.Context, c store.CallLog, expect uint64, out store.Outbox) (store.CallLog, error) {
	apply, err := s.prepareOutbox(out)
	if err != nil {
		return c, err
	}
	var saved store.CallLog
	err = s.update(ctx, func(txn *bdb.Txn) error {
		saved = c
		cur, err := getCall(txn, c.SID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if expect != 0 {
				return fmt.Errorf("%w: call %s does not exist", store.ErrConflict, c.SID)
			}
			if saved.ID <= 0 {
				return errors.New("a new call needs its call_log_id (NextCallLogID)")
			}
			if err := txn.Set(keyCallID(saved.ID), []byte(c.SID)); err != nil {
				return err
			}
			if err := txn.Set(keyCaller(c.WorkspaceID, c.From), nil); err != nil {
				return err
			}
		case err != nil:
			return err
		case cur.Version != expect:
			return fmt.Errorf("%w: call %s is at version %d, not %d", store.ErrConflict, c.SID, cur.Version, expect)
		default:
			saved.ID = cur.ID
		}
		saved.Version = expect + 1
		b, err := json.Marshal(&saved)
		if err != nil {
			return err
		}
		if err := txn.Set(keyCall(c.SID), b); err != nil {
			return err
		}
		return apply(txn)
	})
	return saved, err
}

func (s *Store) CallerKnown(ctx context.Context, ws int64, from string) (bool, error) {
	known := false
	err := s.db.View(func(txn *bdb.Txn) error {
		_, err := txn.Get(keyCaller(ws, from))
		if errors.Is(err, bdb.ErrKeyNotFound) {
			return nil
		}
		known = err == nil
		return err
	})
	return known, err
}

package badger

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bdb "github.com/dgraph-io/badger/v4"
	"github.com/ringgate/ringgate/gateway/store"
)

// Session keys:
//
//	s/<session id>   session (JSON), TTL: hold plus grace
func keySession(id string) []byte { return append([]byte("s/"), id...) }

var _ store.SessionStore = (*Store)(nil)

func (s *Store) PutSession(ctx context.Context, ss store.Session, ttl time.Duration) error {
	b, err := json.Marshal(&ss)
	if err != nil {
		return err
	}
	ttl = max(ttl, time.Second)
	return s.updateCommitted(ctx, func(txn *bdb.Txn) error { return s.set(txn, keySession(ss.ID), b, ttl) })
}

func (s *Store) Session(ctx context.Context, id string) (store.Session, error) {
	var ss store.Session
	err := s.db.View(func(txn *bdb.Txn) error { return getJSON(txn, keySession(id), &ss) })
	return ss, err
}

func (s *Store) Sessions(ctx context.Context, fn func(store.Session) error) error {
	return s.db.View(func(txn *bdb.Txn) error {
		prefix := []byte("s/")
		it := txn.NewIterator(bdb.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var ss store.Session
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &ss) }); err != nil {
				return fmt.Errorf("session %s: %w", it.Item().Key(), err)
			}
			if err := fn(ss); err != nil {
				return err
			}
		}
		return nil
	})
}

package jetstream

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/ringgate/ringgate/gateway/pace"
	"github.com/ringgate/ringgate/gateway/store"
)

// pace: rg_pace keys are "p" and the caller's key in hex; a value is the time the key's budget is
// whole again (pace.Rate.Take's state), in Unix nanoseconds, in decimal.

var _ store.Pacer = (*Store)(nil)

// paceTTL is how long a key outlives its last event. Every limit paced here is whole again well
// within it (a minute for the tracker's; an endpoint's rate_limit under one a day is the
// exception, and its budget then comes back at most a day early).
const paceTTL = 24 * time.Hour

// paceRounds bounds the compare-and-set rounds of one Pace. Each lost round means another
// writer took a share meanwhile; the next round waits a random moment first (up to paceJitter
// times the rounds lost), so that writers who lost together do not collide again. Past the
// rounds, Pace returns store.ErrContended: contention is not an empty budget.
const (
	paceRounds = 8
	paceJitter = 500 * time.Microsecond
)

// Pace takes one event's share of key's budget (store.Pacer): it reads the key's state, decides
// the event with pace.Rate.Take on the caller's clock, and writes the new state only if nobody
// else wrote it meanwhile, so two nodes never take the same share.
func (s *Store) Pace(ctx context.Context, key string, r pace.Rate, now time.Time) (time.Duration, error) {
	k := "p" + hex.EncodeToString([]byte(key))
	for round := range paceRounds {
		if round > 0 {
			t := time.NewTimer(rand.N(time.Duration(round) * paceJitter))
			select {
			case <-ctx.Done():
				t.Stop()
				return 0, fmt.Errorf("pace %s: %w", key, ctx.Err())
			case <-t.C:
			}
		}
		var tat int64
		var rev uint64
		e, err := s.pace.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return 0, fmt.Errorf("pace %s: %w", key, err)
		default:
			rev = e.Revision()
			tat, _ = strconv.ParseInt(string(e.Value()), 10, 64) // unreadable: as if none
		}
		ok, next, wait := r.Take(tat, now)
		if !ok {
			return wait, nil
		}
		b := strconv.AppendInt(nil, next, 10)
		if rev == 0 {
			_, err = s.pace.Create(ctx, k, b)
		} else {
			_, err = s.pace.Update(ctx, k, b, rev)
		}
		switch {
		case err == nil:
			return 0, nil
		case !isConflict(err):
			return 0, fmt.Errorf("pace %s: %w", key, err)
		}
	}
	return 0, fmt.Errorf("pace %s: %w", key, store.ErrContended)
}

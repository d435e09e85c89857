package badger

import (
	"io"
	"log/slog"
	"reflect"
	"testing"

	"github.com/ringgate/ringgate/gateway/store"
	"github.com/ringgate/ringgate/gateway/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, dir string) store.Store {
		s, err := Open(dir, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// FuzzCodec: decoding never panics, and what is encoded decodes to the same.
func FuzzCodec(f *testing.F) {
	d := store.Delivery{ID: "msg_1", EventID: "evt_1", Event: "call.completed", WorkspaceID: 7, EndpointID: "ep", Status: store.Retrying, Attempts: 2, LastError: "x"}
	f.Add(appendDelivery(nil, &d))
	f.Add(appendAttemptEntry(nil, &store.Attempt{N: 1, Response: "ok"}))
	f.Add([]byte{1, 200, 200, 200})
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, rest, err := readDelivery(b); err == nil {
			again, rest2, err := readDelivery(append(appendDelivery(nil, &got), rest...))
			if err != nil || !reflect.DeepEqual(again, got) || string(rest2) != string(rest) {
				t.Fatalf("round trip: %+v vs %+v (%v)", got, again, err)
			}
		}
		readAttempts(b)
		unpackPayload(b)
	})
}

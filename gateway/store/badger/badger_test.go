package badger

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

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

// A backup restores whole; one cut short anywhere, or not a backup at all, is refused and leaves
// no directory behind.
func TestBackupRestore(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := Open(t.TempDir(), Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		ss := store.Session{ID: fmt.Sprintf("s_%d", i), WorkspaceID: 1, Attribution: map[string]string{"gclid": strings.Repeat("g", 300)}, HoldUntil: time.Now().Add(time.Hour)}
		if err := s.PutSession(ctx, ss, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := s.Backup(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	s.Close()
	full := buf.Bytes()
	restore := func(b []byte) (string, error) {
		dir := filepath.Join(t.TempDir(), "data")
		f := filepath.Join(t.TempDir(), "x.backup")
		os.WriteFile(f, b, 0o600)
		in, _ := os.Open(f)
		defer in.Close()
		return dir, Restore(dir, in, Options{Logger: quiet})
	}
	for _, n := range []int{0, 5, len(backupHeader), len(backupHeader) + 10, len(full) / 2, len(full) - 9, len(full) - 1} {
		dir, err := restore(full[:n])
		if err == nil || (!strings.Contains(err.Error(), "incomplete") && !strings.Contains(err.Error(), "not a ringgate backup")) {
			t.Errorf("a backup cut to %d of %d bytes: %v", n, len(full), err)
		}
		if _, serr := os.Stat(dir); !os.IsNotExist(serr) {
			t.Errorf("a refused restore left %s", dir)
		}
	}
	dir, err := restore(full)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(dir, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n := 0
	r.Sessions(ctx, func(store.Session) error { n++; return nil })
	if n != 50 {
		t.Fatalf("%d sessions restored, want 50", n)
	}
	if _, err := restore(full); err != nil {
		t.Fatal(err) // each restore in a new directory
	}
	f := filepath.Join(t.TempDir(), "full.backup")
	os.WriteFile(f, full, 0o600)
	in, _ := os.Open(f)
	defer in.Close()
	if err := Restore(dir, in, Options{Logger: quiet}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restored over a store: %v", err)
	}
}

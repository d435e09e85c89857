package jetstream

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

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

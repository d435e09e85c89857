package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/store"
	badgerstore "github.com/ringgate/ringgate/gateway/store/badger"
	jsstore "github.com/ringgate/ringgate/gateway/store/jetstream"
)

// openStore opens the configured backend: Badger in storage.path, or JetStream on the NATS
// servers of storage.jetstream.urls or on a server embedded in this process.
func openStore(cfg *config.Config, log *slog.Logger) (store.Store, error) {
	sc := cfg.Storage
	if sc.Backend != "jetstream" {
		return badgerstore.Open(sc.Path, badgerstore.Options{Retention: cfg.Delivery.LogRetention, Logger: log})
	}
	j := sc.JetStream
	opt := jsstore.Options{
		URLs: j.URLs, CredentialsFile: j.Credentials, Replicas: j.Replicas, AckWait: j.Lease,
		Retention: cfg.Delivery.LogRetention, Logger: log,
	}
	if j.TLS.CA != "" || j.TLS.Cert != "" {
		tc, err := natsTLS(j.TLS)
		if err != nil {
			return nil, err
		}
		opt.TLS = tc
	}
	if j.Embedded {
		name := j.Name
		if name == "" {
			name, _ = os.Hostname()
		}
		srv, err := jsstore.StartServer(jsstore.ServerOptions{
			Name: name, Listen: j.Listen, ClusterListen: j.ClusterListen, ClusterName: j.ClusterName,
			Routes: j.Routes, StoreDir: filepath.Join(sc.Path, "jetstream"), Logger: log,
		})
		if err != nil {
			return nil, err
		}
		opt.Server = srv
		log.Info("embedded NATS server started", "name", name, "cluster", j.ClusterListen, "routes", len(j.Routes))
	}
	st, err := jsstore.Open(context.Background(), opt)
	if err != nil {
		if opt.Server != nil {
			opt.Server.Shutdown()
		}
		return nil, err
	}
	return st, nil
}

func natsTLS(c config.NATSTLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("storage.jetstream.tls.ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("storage.jetstream.tls.ca: no certificate in %s", c.CA)
		}
	}
	if c.Cert != "" {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("storage.jetstream.tls: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

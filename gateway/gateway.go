// Package gateway is ringgate as a library: New provisions a gateway from a config, Start opens
// its listeners, Publish is the one way in for events, Shutdown stops it gracefully. The ringgate
// binary is a thin main around it.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringgate/ringgate/gateway/admin"
	"github.com/ringgate/ringgate/gateway/calls"
	"github.com/ringgate/ringgate/gateway/clock"
	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/delivery"
	"github.com/ringgate/ringgate/gateway/events"
	"github.com/ringgate/ringgate/gateway/httpx"
	"github.com/ringgate/ringgate/gateway/ingress"
	"github.com/ringgate/ringgate/gateway/metrics"
	"github.com/ringgate/ringgate/gateway/sessions"
	"github.com/ringgate/ringgate/gateway/store"
	"github.com/ringgate/ringgate/gateway/twilioapi"
	"github.com/ringgate/ringgate/plugins"
	"github.com/valyala/fasthttp"
)

// Version is set at build time (-ldflags "-X github.com/ringgate/ringgate/gateway.Version=...").
var Version = "dev"

// Options are the parts of a gateway that do not come from the config file.
type Options struct {
	Logger *slog.Logger // slog.Default() when nil
	Clock  clock.Clock  // the wall clock when nil
	// ConfigFile is re-read by Reload; empty when the config came from elsewhere.
	ConfigFile string
	// Resolver replaces DNS for endpoint dialing (tests).
	Resolver delivery.Resolver
	// CallerNames and Transcripts replace the Twilio REST clients (tests).
	CallerNames calls.CallerNames
	Transcripts calls.Transcriber
	// Sessions attributes calls to website visits.
	Sessions calls.SessionMatcher
}

// Gateway is one running ringgate.
type Gateway struct {
	opt    Options
	log    *slog.Logger
	cfg    atomic.Pointer[config.Config]
	store  store.Store
	engine *delivery.Engine
	calls  *calls.Service
	track  *sessions.Service
	stats  *metrics.Metrics
	wasm   *plugins.Host
	twilio *ingress.Handler
	admin  *admin.API

	reloadMu sync.Mutex

	mu          sync.Mutex
	public      *fasthttp.Server
	adminSrv    *fasthttp.Server
	publicLn    net.Listener
	adminLn     net.Listener
	started     bool
	shutdown    bool
	shutdownErr error
	serveWG     sync.WaitGroup
}

// New opens the store and provisions the delivery engine; it does not listen yet.
func New(cfg *config.Config, opt Options) (*Gateway, error) {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	g := &Gateway{opt: opt, log: opt.Logger}
	st, err := openStore(cfg, opt.Logger)
	if err != nil {
		return nil, err
	}
	g.store = st
	host, err := plugins.NewHost(plugins.Options{CacheDir: filepath.Join(cfg.Storage.Path, "wasm-cache"), Logger: opt.Logger})
	if err != nil {
		st.Close()
		return nil, err
	}
	g.wasm = host
	if err := host.Provision(context.Background(), cfg); err != nil {
		host.Close()
		st.Close()
		return nil, err
	}
	g.stats = metrics.New(metrics.Sources{Store: st, Engine: g.Engine, Transform: plugins.Stats})
	g.engine = delivery.New(delivery.Options{
		Store: st, Clock: opt.Clock, Logger: opt.Logger, Version: Version, Resolver: opt.Resolver, Transform: host,
		Observer: g.stats,
	})
	if err := g.engine.Provision(context.Background(), cfg); err != nil {
		host.Close()
		st.Close()
		return nil, err
	}
	g.cfg.Store(cfg)
	g.track = sessions.New(sessions.Options{Store: st, Config: g.Config, Clock: opt.Clock, Logger: opt.Logger})
	if err := g.track.Provision(context.Background(), cfg); err != nil {
		host.Close()
		st.Close()
		return nil, err
	}
	if opt.Sessions == nil {
		opt.Sessions = g.track
	}
	if tw := cfg.Twilio; opt.CallerNames == nil && opt.Transcripts == nil && tw.AccountSID != "" &&
		(tw.LookupCallerName || tw.IntelligenceServiceSID != "") {
		api := twilioapi.New(tw.AccountSID, tw.AuthToken, tw.IntelligenceServiceSID, nil)
		opt.CallerNames = api
		if tw.IntelligenceServiceSID != "" {
			opt.Transcripts = api
		}
	}
	g.calls = calls.New(calls.Options{
		Store: st, Engine: g.engine, Config: g.Config, Clock: opt.Clock, Logger: opt.Logger,
		Names: opt.CallerNames, Transcripts: opt.Transcripts, Sessions: opt.Sessions,
	})
	g.twilio = ingress.New(ingress.Options{Calls: g.calls, Config: g.Config, Logger: opt.Logger, Observer: g.stats})
	g.stats.AddSessions(g.track)
	g.admin = admin.New(admin.Options{
		Engine: g.engine, Store: st, Calls: g.calls, Logger: opt.Logger, Version: Version,
		Config: g.Config, Reload: g.Reload, Metrics: g.stats.Handler(), Tracker: g.track.Stats,
	})
	return g, nil
}

// Config returns the config in force.
func (g *Gateway) Config() *config.Config { return g.cfg.Load() }

// Tracker is the website tracker's side: visitor sessions and number pools.
func (g *Gateway) Tracker() *sessions.Service { return g.track }

// Engine exposes the delivery engine to packages that emit events (ingress, admin).
func (g *Gateway) Engine() *delivery.Engine { return g.engine }

// Store exposes the store.
func (g *Gateway) Store() store.Store { return g.store }

// Start opens the public and admin listeners and starts delivering.
func (g *Gateway) Start() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shutdown {
		return errors.New("gateway: Start after Shutdown")
	}
	if g.started {
		return nil
	}
	cfg := g.cfg.Load()
	pl, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("server.listen: %w", err)
	}
	al, err := net.Listen("tcp", cfg.Server.Admin.Listen)
	if err != nil {
		pl.Close()
		return fmt.Errorf("server.admin.listen: %w", err)
	}
	g.publicLn, g.adminLn = pl, al
	g.public = newServer("ringgate", g.Handler(), g.log)
	g.adminSrv = newServer("ringgate-admin", g.admin.Handler(), g.log)
	if err := g.engine.Start(); err != nil {
		pl.Close()
		al.Close()
		return err
	}
	g.started = true
	for _, s := range []struct {
		srv *fasthttp.Server
		ln  net.Listener
	}{{g.public, pl}, {g.adminSrv, al}} {
		g.serveWG.Add(1)
		go func() {
			defer g.serveWG.Done()
			if err := s.srv.Serve(s.ln); err != nil {
				g.log.Error("listener stopped", "addr", s.ln.Addr().String(), "err", err)
			}
		}()
	}
	g.log.Info("ringgate started", "version", Version, "listen", pl.Addr().String(), "admin", al.Addr().String(), "store", cfg.Storage.Path)
	return nil
}

func newServer(name string, h fasthttp.RequestHandler, log *slog.Logger) *fasthttp.Server {
	return &fasthttp.Server{
		Name:               name,
		Handler:            httpx.Recover(h, log),
		ReadTimeout:        10 * time.Second,
		WriteTimeout:       10 * time.Second,
		IdleTimeout:        60 * time.Second,
		MaxRequestBodySize: 1 << 20,
		NoDefaultDate:      false,
		Logger:             fasthttpLogger{log},
	}
}

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) { f.l.Debug(fmt.Sprintf(format, args...)) }

// Addr is the public listener's address once started.
func (g *Gateway) Addr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.publicLn == nil {
		return ""
	}
	return g.publicLn.Addr().String()
}

// AdminAddr is the admin listener's address once started.
func (g *Gateway) AdminAddr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.adminLn == nil {
		return ""
	}
	return g.adminLn.Addr().String()
}

// Publish makes ev durable with one delivery per subscribed endpoint of its workspace; when it
// returns nil, the event and its deliveries survive a crash.
func (g *Gateway) Publish(ctx context.Context, ev *events.Event) (delivery.Published, error) {
	return g.engine.Publish(ctx, ev)
}

// Reload re-reads the config file and applies it. An invalid file is refused with its errors and
// the running config stays.
func (g *Gateway) Reload(ctx context.Context) error {
	if g.opt.ConfigFile == "" {
		return errors.New("no config file to reload")
	}
	cfg, err := config.Load(g.opt.ConfigFile)
	if err != nil {
		return err
	}
	return g.Apply(ctx, cfg)
}

// Apply switches to cfg. Listener and storage changes need a restart and are logged as such.
func (g *Gateway) Apply(ctx context.Context, cfg *config.Config) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	old := g.cfg.Load()
	if old.Server.Listen != cfg.Server.Listen || old.Server.Admin.Listen != cfg.Server.Admin.Listen || !reflect.DeepEqual(old.Storage, cfg.Storage) {
		g.log.Warn("listener and storage changes take effect at the next restart")
	}
	if err := g.wasm.Provision(ctx, cfg); err != nil {
		return err
	}
	if err := g.track.Provision(ctx, cfg); err != nil {
		return err
	}
	if err := g.engine.Provision(ctx, cfg); err != nil {
		return err
	}
	g.cfg.Store(cfg)
	g.log.Info("config reloaded", "file", cfg.File)
	return nil
}

// Shutdown stops accepting requests, finishes attempts in flight (until ctx ends) and closes
// the store. It is idempotent.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shutdown {
		return g.shutdownErr
	}
	g.shutdown = true
	var errs []error
	for _, s := range []*fasthttp.Server{g.public, g.adminSrv} {
		if s != nil {
			if err := s.ShutdownWithContext(ctx); err != nil {
				errs = append(errs, err)
			}
		}
	}
	g.serveWG.Wait()
	if err := g.engine.Stop(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := g.wasm.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := g.store.Close(); err != nil {
		errs = append(errs, err)
	}
	g.shutdownErr = errors.Join(errs...)
	g.log.Info("ringgate stopped")
	return g.shutdownErr
}

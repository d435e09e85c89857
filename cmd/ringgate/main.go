// Command ringgate is the gateway's binary: serve, check, simulate, sink, plugin, restore and version.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ringgate/ringgate/gateway"
	"github.com/ringgate/ringgate/gateway/config"
	badgerstore "github.com/ringgate/ringgate/gateway/store/badger"
	"github.com/ringgate/ringgate/plugins"
)

const usage = `ringgate: a self-hosted edge gateway for call tracking

Usage:
  ringgate serve   --config FILE     run the gateway (SIGHUP reloads, SIGINT/SIGTERM stop)
  ringgate check   --config FILE     validate a config and compile its transforms; every problem
                                     as FILE:LINE:COL
  ringgate simulate --config FILE --to NUMBER [--from NUMBER] [--outcome OUTCOME] [--gateway URL]
                                     play Twilio: the signed callbacks of one call; prints its SID
                                     (outcomes: answered, no-answer, busy, failed, voicemail, blocked)
  ringgate sink    --listen ADDR --secret SECRET [--status N] [--fail-rate F]
                                     a receiver that verifies signatures and prints deliveries
  ringgate plugin run --module FILE [--event NAME | --input FILE] [--config KEY=VALUE ...] [--repeat N]
                                     run a transform once; prints body, headers, guest log, time
  ringgate restore --config FILE --input BACKUP
                                     load a backup (GET /api/v1/backup) into an empty storage.path
  ringgate version                   print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "check":
		return check(args[1:], stdout, stderr)
	case "sink":
		return sink(args[1:], stdout, stderr)
	case "simulate":
		return simulate(args[1:], stdout, stderr)
	case "plugin":
		return plugin(args[1:], stdout, stderr)
	case "restore":
		return restore(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "ringgate", gateway.Version)
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "ringgate: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func check(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "ringgate.yaml", "config file")
	if fs.Parse(args) != nil {
		return 2
	}
	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if errs := checkTransforms(cfg); len(errs) > 0 {
		fmt.Fprintln(stderr, errs)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", *file)
	return 0
}

// checkTransforms compiles each endpoint's transform and checks its exports and imports, as
// serve and a reload do, so that a broken module is found before it is deployed.
func checkTransforms(cfg *config.Config) config.Errors {
	var errs config.Errors
	var h *plugins.Host
	for wi, ws := range cfg.Workspaces {
		for ei, ep := range ws.Endpoints {
			if ep.Transform == nil {
				continue
			}
			if h == nil {
				var err error
				if h, err = plugins.NewHost(plugins.Options{CacheDir: wasmCache(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err != nil {
					return config.Errors{{File: cfg.File, Msg: err.Error()}}
				}
				defer h.Close()
			}
			if err := h.Check(context.Background(), ep.Transform); err != nil {
				errs = append(errs, cfg.ErrorAt(fmt.Sprintf("workspaces[%d].endpoints[%d].transform.module", wi, ei), err.Error()))
			}
		}
	}
	return errs
}

// wasmCache is where commands other than serve keep compiled transforms ("": in memory only,
// when the user has no cache directory).
func wasmCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "ringgate", "wasm")
}

// restore loads a backup taken with GET /api/v1/backup into the config's storage.path, which
// must not hold a store yet.
func restore(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "ringgate.yaml", "config file: the backup goes to its storage.path")
	input := fs.String("input", "", "the backup file")
	if fs.Parse(args) != nil {
		return 2
	}
	if *input == "" {
		fmt.Fprintln(stderr, "restore: --input is required")
		return 2
	}
	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if cfg.Storage.Backend != "badger" {
		fmt.Fprintf(stderr, "restore: storage.backend is %s; a JetStream store is restored with NATS's tools (nats stream restore)\n", cfg.Storage.Backend)
		return 1
	}
	in, err := os.Open(*input)
	if err != nil {
		fmt.Fprintln(stderr, "restore:", err)
		return 1
	}
	defer in.Close()
	if err := badgerstore.Restore(cfg.Storage.Path, in, badgerstore.Options{Logger: newLogger(cfg, stderr)}); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "restored %s into %s\n", *input, cfg.Storage.Path)
	return 0
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "ringgate.yaml", "config file")
	if fs.Parse(args) != nil {
		return 2
	}
	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	log := newLogger(cfg, stderr)
	slog.SetDefault(log)
	g, err := gateway.New(cfg, gateway.Options{Logger: log, ConfigFile: *file})
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if err := g.Start(); err != nil {
		log.Error("cannot start", "err", err)
		g.Shutdown(context.Background())
		return 1
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	for s := range sig {
		if s == syscall.SIGHUP {
			if err := g.Reload(context.Background()); err != nil {
				log.Error("reload refused; the running config stays", "err", err)
			}
			continue
		}
		log.Info("stopping", "signal", s.String())
		break
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("shutdown", "err", err)
		return 1
	}
	return 0
}

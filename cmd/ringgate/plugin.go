package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/delivery"
	"github.com/ringgate/ringgate/gateway/events"
	"github.com/ringgate/ringgate/plugins"
)

// kvFlags collects repeated --config KEY=VALUE.
type kvFlags map[string]string

func (k kvFlags) String() string { return fmt.Sprint(map[string]string(k)) }
func (k kvFlags) Set(s string) error {
	key, val, ok := strings.Cut(s, "=")
	if !ok || key == "" {
		return fmt.Errorf("%q is not KEY=VALUE", s)
	}
	k[key] = val
	return nil
}

// plugin is ringgate plugin run: the integrator's test harness for a transform.
func plugin(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "run" {
		fmt.Fprintln(stderr, "usage: ringgate plugin run --module FILE [--event NAME | --input FILE] [--config KEY=VALUE ...]")
		return 2
	}
	fs := flag.NewFlagSet("plugin run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	module := fs.String("module", "", "the .wasm transform (required)")
	event := fs.String("event", "call.completed", "run on a sample of this event type")
	input := fs.String("input", "", "run on this payload file instead of a sample")
	timeout := fs.Duration("timeout", 100*time.Millisecond, "time for the call")
	memory := fs.String("memory", "64MiB", "guest memory cap")
	cfg := kvFlags{}
	fs.Var(cfg, "config", "a transform.config value, KEY=VALUE (repeatable)")
	if fs.Parse(args[1:]) != nil {
		return 2
	}
	if *module == "" {
		fmt.Fprintln(stderr, "plugin run: --module is required")
		return 2
	}
	var body []byte
	typ := *event
	if *input != "" {
		b, err := os.ReadFile(*input)
		if err != nil {
			fmt.Fprintln(stderr, "plugin run:", err)
			return 1
		}
		body = b
	} else {
		ev, err := events.Sample(*event, events.Workspace{ID: 1, Name: "My Workspace"}, time.Now())
		if err != nil {
			fmt.Fprintln(stderr, "plugin run:", err)
			return 2
		}
		body, _ = ev.Marshal()
	}
	var mem int64
	fmt.Sscanf(strings.TrimSuffix(*memory, "MiB"), "%d", &mem)
	if mem <= 0 {
		fmt.Fprintln(stderr, "plugin run: --memory takes a size in MiB, like 64MiB")
		return 2
	}
	cache, _ := os.UserCacheDir()
	h, err := plugins.NewHost(plugins.Options{CacheDir: filepath.Join(cache, "ringgate", "wasm"), CheckEvery: -1,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		fmt.Fprintln(stderr, "plugin run:", err)
		return 1
	}
	defer h.Close()
	ep := &config.Endpoint{ID: "plugin-run", URL: "https://crm.example.com/hook", Transform: &config.Transform{
		Module: *module, Config: cfg, Timeout: *timeout, MemoryLimit: config.ByteSize(mem << 20),
	}}
	if err := h.Provision(context.Background(), &config.Config{Workspaces: []config.Workspace{{Endpoints: []config.Endpoint{*ep}}}}); err != nil {
		fmt.Fprintln(stderr, "plugin run:", err)
		return 1
	}
	meta := delivery.TransformMeta{Event: typ, EndpointID: ep.ID, EndpointURL: ep.URL, DeliveryID: "msg_plugin_run", WorkspaceID: 1, Attempt: 1}
	start := time.Now()
	res, err := h.Transform(context.Background(), ep, meta, body)
	took := time.Since(start)
	if res.Logs != "" {
		fmt.Fprintf(stderr, "guest log:\n%s\n", strings.TrimRight(res.Logs, "\n"))
	}
	if err != nil {
		fmt.Fprintf(stderr, "plugin run: %v (after %s)\n", err, took.Round(time.Microsecond))
		return 1
	}
	sort.Slice(res.Headers, func(i, j int) bool { return res.Headers[i][0] < res.Headers[j][0] })
	for _, hd := range res.Headers {
		fmt.Fprintf(stderr, "header: %s: %s\n", hd[0], hd[1])
	}
	switch {
	case res.Drop:
		fmt.Fprintf(stderr, "result: drop (the delivery would be recorded as filtered) in %s\n", took.Round(time.Microsecond))
	case res.Body == nil:
		fmt.Fprintf(stderr, "result: deliver the original payload in %s\n", took.Round(time.Microsecond))
		stdout.Write(append(body, '\n'))
	default:
		fmt.Fprintf(stderr, "result: deliver %d bytes in %s\n", len(res.Body), took.Round(time.Microsecond))
		stdout.Write(append(res.Body, '\n'))
	}
	return 0
}

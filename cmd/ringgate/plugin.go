package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
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
		fmt.Fprintln(stderr, "usage: ringgate plugin run --module FILE [--event NAME | --input FILE] [--config KEY=VALUE ...] [--repeat N]")
		return 2
	}
	fs := flag.NewFlagSet("plugin run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	module := fs.String("module", "", "the .wasm transform (required)")
	event := fs.String("event", "call.completed", "run on a sample of this event type")
	input := fs.String("input", "", "run on this payload file instead of a sample")
	timeout := fs.Duration("timeout", 100*time.Millisecond, "time for the call")
	memory := fs.String("memory", "64MiB", "guest memory cap")
	repeat := fs.Int("repeat", 0, "then call it N more times on the warm instance: prints the time per call, and fails when a result differs from the first")
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
	mem, err := config.ParseByteSize(*memory)
	if err != nil || mem <= 0 || *repeat < 0 {
		fmt.Fprintln(stderr, "plugin run: --memory takes a size like 64MiB, --repeat a count")
		return 2
	}
	h, err := plugins.NewHost(plugins.Options{CacheDir: wasmCache(), CheckEvery: -1,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		fmt.Fprintln(stderr, "plugin run:", err)
		return 1
	}
	defer h.Close()
	ep := &config.Endpoint{ID: "plugin-run", URL: "https://crm.example.com/hook", Transform: &config.Transform{
		Module: *module, Config: cfg, Timeout: *timeout, MemoryLimit: config.ByteSize(mem),
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
	if *repeat == 0 {
		return 0
	}
	// The first call paid for the instance; the next ones are what a delivery pays. Each must
	// give the first's result: a transform that keeps state between calls, or reads something
	// other than its input, config and metadata, gives different bodies to the same delivery's
	// retries.
	start = time.Now()
	for i := 2; i <= *repeat+1; i++ {
		again, err := h.Transform(context.Background(), ep, meta, body)
		if err != nil {
			fmt.Fprintf(stderr, "plugin run: call %d: %v\n", i, err)
			return 1
		}
		if what := differs(res, again); what != "" {
			fmt.Fprintf(stderr, "plugin run: call %d gave a different %s than call 1 for the same input: "+
				"a transform must not keep state from one call to the next\n", i, what)
			return 1
		}
		h.Recycle(again.Body) // as the delivery engine does once a body is sent
	}
	fmt.Fprintf(stderr, "repeat: %d more calls, %s per call, each with the result of the first\n",
		*repeat, (time.Since(start) / time.Duration(*repeat)).Round(10*time.Nanosecond))
	return 0
}

// differs names what two results of the same call do not share ("" when they are the same).
func differs(a, b delivery.TransformResult) string {
	switch {
	case a.Drop != b.Drop:
		return "decision to drop"
	case (a.Body == nil) != (b.Body == nil) || !bytes.Equal(a.Body, b.Body):
		return "body"
	case !slices.Equal(a.Headers, b.Headers):
		return "set of headers"
	}
	return ""
}

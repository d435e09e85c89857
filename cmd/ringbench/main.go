// Command ringbench is `make bench`: each figure is measured next to a baseline in the same
// process and reported as a ratio, so a noisy machine shifts both. It never fails on a number;
// it prints them, with the target beside each.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/delivery"
	"github.com/ringgate/ringgate/gateway/events"
	badgerstore "github.com/ringgate/ringgate/gateway/store/badger"
	"github.com/ringgate/ringgate/plugins"
	"github.com/valyala/fasthttp"
)

// lastCPU is the CPU time per event of the last publish run.
var lastCPU time.Duration

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func main() {
	only := flag.String("only", "", "run only benchmarks whose name contains this")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			panic(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	benches := []struct {
		name string
		fn   func() error
	}{
		{"publish", benchPublish},
		{"delivery", benchDelivery},
		{"callbacks", benchCallbacks},
		{"transforms", benchTransforms},
		{"sessions", benchSessions},
		{"idle-rss", benchIdleRSS},
		{"cluster", benchCluster},
	}
	fmt.Printf("ringbench on %d CPUs; ratios compare with a baseline measured in this run\n\n", nproc())
	for _, b := range benches {
		if *only != "" && !strings.Contains(b.name, *only) {
			continue
		}
		if err := b.fn(); err != nil {
			fmt.Printf("%s: error: %v\n", b.name, err)
		}
	}
}

func nproc() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

// rounds is how many times each comparison runs; the median ratio is reported.
var rounds = 3

func init() {
	if os.Getenv("RINGBENCH_ROUNDS") == "1" {
		rounds = 1
	}
}

// medianRun runs one round (returning candidate and baseline rates) several times and reports
// the round with the median ratio.
func medianRun(name, unit, baseName, target string, round func() (value, base float64, note string, err error)) error {
	type result struct {
		v, b float64
		note string
	}
	var rs []result
	for i := 0; i < rounds; i++ {
		v, b, note, err := round()
		if err != nil {
			return err
		}
		rs = append(rs, result{v, b, note})
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].v/rs[i].b < rs[j].v/rs[j].b })
	m := rs[len(rs)/2]
	report(name, m.v, unit, baseName, m.b, target)
	ratios := make([]string, len(rs))
	for i, r := range rs {
		ratios[i] = fmt.Sprintf("%.2f", r.v/r.b)
	}
	fmt.Printf("%-44s %s; ratios of the %d rounds: %s\n", "", m.note, len(rs), strings.Join(ratios, ", "))
	return nil
}

func report(name string, value float64, unit string, baseName string, base float64, target string) {
	fmt.Printf("%-44s %12.0f %-10s baseline %-34s %12.0f  ratio %6.2fx  (target %s)\n",
		name, value, unit, baseName, base, value/base, target)
}

func benchConfig(url string) *config.Config {
	y := fmt.Sprintf(`
server: {public_url: "http://127.0.0.1:8080", admin: {token: "0123456789abcdef"}}
twilio: {auth_token: "bench"}
delivery: {allow_http: true, allow_private_networks: true}
workspaces:
  - id: 1
    name: Bench
    endpoints:
      - {id: sink, name: sink, url: %q, events: [call.completed]}
`, url)
	cfg, err := config.Parse([]byte(y), "bench.yaml", os.LookupEnv)
	if err != nil {
		panic(err)
	}
	return cfg
}

func sampleEvent() *events.Event {
	ev, _ := events.Sample(events.CallCompleted, events.Workspace{ID: 1, Name: "Bench"}, time.Now())
	return ev
}

// benchPublish: durable publishes per second from 64 concurrent publishers (group commit) against
// one publisher at a time, where each event pays its own fsync.
func benchPublish() error {
	run := func(workers, total int, syncInterval time.Duration) (float64, float64, error) {
		dir, _ := os.MkdirTemp("", "ringbench")
		defer os.RemoveAll(dir)
		st, err := badgerstore.Open(dir, badgerstore.Options{Logger: quiet, SyncInterval: syncInterval})
		if err != nil {
			return 0, 0, err
		}
		defer st.Close()
		e := delivery.New(delivery.Options{Store: st, Logger: quiet})
		if err := e.Provision(context.Background(), benchConfig("http://127.0.0.1:1/")); err != nil {
			return 0, 0, err
		}
		ev := sampleEvent()
		var n atomic.Int64
		var wg sync.WaitGroup
		cpu0 := cpuTime()
		start := time.Now()
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n.Add(1) <= int64(total) {
					if _, err := e.Publish(context.Background(), ev); err != nil {
						panic(err)
					}
				}
			}()
		}
		wg.Wait()
		rate := float64(total) / time.Since(start).Seconds()
		lastCPU = (cpuTime() - cpu0) / time.Duration(total)
		commits, ops := st.Stats()
		return rate, float64(ops) / float64(commits), nil
	}
	return medianRun("durable publish, 256 publishers (events/s)", "ev/s", "one fsync per event", "≥ 10x", func() (float64, float64, string, error) {
		// The baseline: one publisher, and a sync at once after each commit (no coalescing).
		single, _, err := run(1, 2000, -1)
		if err != nil {
			return 0, 0, "", err
		}
		group, perCommit, err := run(256, 40000, 0)
		if err != nil {
			return 0, 0, "", err
		}
		return group, single, fmt.Sprintf("%.1f events per fsync; CPU per event %s", perCommit, lastCPU.Round(100*time.Nanosecond)), nil
	})
}

// sink is a local fasthttp receiver counting requests.
func startSink() (string, *atomic.Int64, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, nil, err
	}
	var n atomic.Int64
	var conns atomic.Int64
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		n.Add(1)
		if ctx.ConnRequestNum() == 1 {
			conns.Add(1)
		}
	}}
	go srv.Serve(ln)
	if os.Getenv("RINGBENCH_CONNS") != "" {
		go func() {
			for range time.Tick(500 * time.Millisecond) {
				fmt.Fprintln(os.Stderr, "sink connections so far:", conns.Load(), "requests:", n.Load())
			}
		}()
	}
	return "http://" + ln.Addr().String() + "/hook", &n, func() { srv.Shutdown() }, nil
}

// benchDelivery: deliveries per second through the whole engine (queue read, signing, POST, synced
// state change per attempt) against a bare fasthttp client posting the same bodies to the same
// sink with the same concurrency.
func benchDelivery() error {
	return medianRun("deliveries through the engine (per s)", "del/s", "bare fasthttp client, same sink", "≥ 0.5x", deliveryRound)
}

func deliveryRound() (float64, float64, string, error) {
	const total = 20000
	url, _, stop, err := startSink()
	if err != nil {
		return 0, 0, "", err
	}
	cfg := benchConfig(url)
	body, _ := sampleEvent().Marshal()

	// Baseline: a bare client, same concurrency as the endpoint's lane, same sink.
	client := &fasthttp.Client{MaxConnsPerHost: cfg.Delivery.MaxInFlight * 2}
	var n atomic.Int64
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	start := time.Now()
	for w := 0; w < cfg.Delivery.MaxInFlight; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			for n.Add(1) <= total {
				req.Reset()
				req.SetRequestURI(url)
				req.Header.SetMethod("POST")
				req.Header.SetContentType("application/json")
				req.SetBody(body)
				if err := client.Do(req, resp); err != nil {
					panic(err)
				}
			}
		}()
	}
	wg.Wait()
	bare := float64(total) / time.Since(start).Seconds()
	bareCPU := (cpuTime() - cpu0) / total
	stop()
	engine, engineCPU, note, err := deliveryRate(nil)
	if err != nil {
		return 0, 0, "", err
	}
	return engine, bare, fmt.Sprintf("%s; CPU per delivery %s (bare client %s)", note,
		engineCPU.Round(100*time.Nanosecond), bareCPU.Round(100*time.Nanosecond)), nil
}

// deliveryRate publishes a backlog to one endpoint (with the transform, if any), then starts the
// engine and measures deliveries per second until all are delivered and their outcomes committed.
func deliveryRate(tr *config.Transform) (float64, time.Duration, string, error) {
	total := int64(envInt("RINGBENCH_DELIVERIES", 20000))
	url, got, stop, err := startSink()
	if err != nil {
		return 0, 0, "", err
	}
	defer stop()
	cfg := benchConfig(url)
	opts := delivery.Options{Logger: quiet}
	if tr != nil {
		cfg.Workspaces[0].Endpoints[0].Transform = tr
		cache, _ := os.MkdirTemp("", "ringbench-wasm")
		defer os.RemoveAll(cache)
		h, err := plugins.NewHost(plugins.Options{CacheDir: cache, Logger: quiet, CheckEvery: -1, PoolSize: 8})
		if err != nil {
			return 0, 0, "", err
		}
		defer h.Close()
		if err := h.Provision(context.Background(), cfg); err != nil {
			return 0, 0, "", err
		}
		opts.Transform = h
	}
	dir, _ := os.MkdirTemp("", "ringbench")
	defer os.RemoveAll(dir)
	st, err := badgerstore.Open(dir, badgerstore.Options{Logger: quiet})
	if err != nil {
		return 0, 0, "", err
	}
	defer st.Close()
	opts.Store = st
	e := delivery.New(opts)
	if err := e.Provision(context.Background(), cfg); err != nil {
		return 0, 0, "", err
	}
	ev := sampleEvent()
	var pn atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pn.Add(1) <= total {
				e.Publish(context.Background(), ev)
			}
		}()
	}
	wg.Wait()
	got.Store(0)
	c0, o0 := st.Stats()
	cpu0 := cpuTime()
	if f := os.Getenv("RINGBENCH_ENGINE_PROFILE"); f != "" {
		pf, _ := os.Create(f)
		pprof.StartCPUProfile(pf)
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	if err := e.Start(); err != nil {
		return 0, 0, "", err
	}
	for got.Load() < total {
		time.Sleep(time.Millisecond)
	}
	for { // wait for the last outcomes to be committed too
		counts, _ := st.Counts(context.Background())
		if counts["pending"] == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	rate := float64(total) / time.Since(start).Seconds()
	cpu := (cpuTime() - cpu0) / time.Duration(total)
	c1, o1 := st.Stats()
	e.Stop(context.Background())
	return rate, cpu, fmt.Sprintf("%.1f state changes per fsync", float64(o1-o0)/float64(c1-c0)), nil
}

// benchIdleRSS: resident memory of `ringgate serve` with the example config after it settles.
func benchIdleRSS() error {
	bin, err := filepath.Abs("bin/ringgate")
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("build it first (make build): %w", err)
	}
	dir, _ := os.MkdirTemp("", "ringbench")
	defer os.RemoveAll(dir)
	src, err := os.ReadFile("config.example.yaml")
	if err != nil {
		return err
	}
	pub, adm := freeAddr(), freeAddr()
	cfg := strings.NewReplacer("path: ./data", "path: "+filepath.Join(dir, "data"),
		"listen: 127.0.0.1:8080", "listen: "+pub, "listen: 127.0.0.1:8081", "listen: "+adm).Replace(string(src))
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(cfg), 0o644)
	cmd := exec.Command(bin, "serve", "--config", filepath.Join(dir, "c.yaml"))
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	time.Sleep(3 * time.Second)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		return err
	}
	var rss float64
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			fmt.Sscanf(strings.TrimPrefix(l, "VmRSS:"), "%f", &rss)
		}
	}
	fmt.Printf("%-44s %12.1f MB         (target ≤ 40 MB)\n", "idle RSS of ringgate serve, example config", rss/1024)
	return nil
}

// cpuTime is the process's user and system time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// envInt reads a positive integer from the environment, or returns def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

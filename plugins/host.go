// Package plugins hosts endpoint transforms: WebAssembly modules run on wazero under the guest
// ABI v1 (reactor modules exporting transform, and WASI command modules), each compiled once with
// an on-disk compilation cache, reactor instances pooled per module and endpoint, every call
// bounded by a deadline, a memory cap and input, output and log caps, with deterministic clocks
// and randomness and no filesystem, network or environment.
package plugins

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/delivery"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Limits of one call (the ABI's defaults; timeout and memory come from the endpoint's config).
const (
	MaxInput  = 1 << 20
	MaxOutput = 1 << 20
	MaxLog    = 4 << 10
	MaxError  = 1 << 10
)

// Kind tells reactor modules (export transform) from command modules (export _start).
type Kind int

const (
	Reactor Kind = iota
	Command
)

func (k Kind) String() string { return [...]string{"reactor", "command"}[k] }

// Options build a Host.
type Options struct {
	// CacheDir keeps compiled modules across restarts ("" : in memory only).
	CacheDir string
	Logger   *slog.Logger
	// PoolSize caps the reactor instances kept per module and endpoint (default 4).
	PoolSize int
	// CheckEvery is how often module files are checked for changes (default 1s; negative: never).
	CheckEvery time.Duration
	// NoDeadline skips deadline enforcement (benchmarks measure what it costs).
	NoDeadline bool
}

// Host runs transforms. It implements delivery.Transformer.
type Host struct {
	opt   Options
	cache wazero.CompilationCache

	// fast finds an endpoint's pool without the lock: by the endpoint (a config version's
	// endpoints and their config maps do not change), checked against the pool's module and cap,
	// the config map it was found with, and for a retired pool; cleared when the config is
	// provisioned and when the host closes.
	fast  sync.Map // *config.Endpoint -> fastPool
	fastN int      // entries stored since fast was last cleared; h.mu is held

	bodies bodyPool // bodies handed back with Recycle

	mu       sync.Mutex
	runtimes map[uint32]*runtime // by memory limit in pages
	pools    map[poolKey]*pool
	closed   bool
	stop     chan struct{}
	wg       sync.WaitGroup
}

var (
	_ delivery.Transformer = (*Host)(nil)
	_ delivery.Recycler    = (*Host)(nil)
)

// runtime is the wazero runtimes of one memory limit, with the host modules instantiated:
// checked for modules whose deadline wazero enforces (CloseOnContextDone), counted for modules
// instrumented to count their loop iterations (see instrument.go).
type runtime struct {
	checked, counted wazero.Runtime
	modules          map[string]*module // by path: compiled once per file version
}

type poolKey struct {
	endpoint, path string
	pages          uint32
}

// NewHost returns a host; Close releases it.
func NewHost(opt Options) (*Host, error) {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.PoolSize <= 0 {
		opt.PoolSize = 4
	}
	if opt.CheckEvery == 0 {
		opt.CheckEvery = time.Second
	}
	h := &Host{opt: opt, runtimes: map[uint32]*runtime{}, pools: map[poolKey]*pool{}, stop: make(chan struct{})}
	if opt.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(opt.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm compilation cache at %s: %w", opt.CacheDir, err)
		}
		h.cache = c
	} else {
		h.cache = wazero.NewCompilationCache()
	}
	if opt.CheckEvery > 0 {
		h.wg.Add(1)
		go h.watch()
	}
	return h, nil
}

// Close stops the watcher and closes every runtime. It is idempotent.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.fast.Clear()
	h.fastN = 0
	close(h.stop)
	rts := h.runtimes
	h.mu.Unlock()
	h.wg.Wait()
	var errs []error
	for _, rt := range rts {
		errs = append(errs, rt.checked.Close(context.Background()), rt.counted.Close(context.Background()))
	}
	errs = append(errs, h.cache.Close(context.Background()))
	return errors.Join(errs...)
}

func pages(limit config.ByteSize) uint32 {
	p := uint32(int64(limit) / 65536)
	if p == 0 {
		p = 1
	}
	return p
}

// runtimeFor returns the runtime of a memory limit, creating it. h.mu is held.
func (h *Host) runtimeFor(ctx context.Context, p uint32) (*runtime, error) {
	if rt := h.runtimes[p]; rt != nil {
		return rt, nil
	}
	newRuntime := func(closeOnDone, countedYield bool) (wazero.Runtime, error) {
		cfg := wazero.NewRuntimeConfig().
			WithCompilationCache(h.cache).
			WithMemoryLimitPages(p).
			WithCloseOnContextDone(closeOnDone)
		r := wazero.NewRuntimeWithConfig(ctx, cfg)
		wasi := r.NewHostModuleBuilder(wasi_snapshot_preview1.ModuleName)
		wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(wasi)
		if countedYield {
			wasi.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(schedYield), nil, []api.ValueType{api.ValueTypeI32}).Export("sched_yield")
		}
		if _, err := wasi.Instantiate(ctx); err != nil {
			r.Close(ctx)
			return nil, err
		}
		if err := instantiateABI(ctx, r); err != nil {
			r.Close(ctx)
			return nil, err
		}
		return r, nil
	}
	checked, err := newRuntime(!h.opt.NoDeadline, false)
	if err != nil {
		return nil, err
	}
	counted, err := newRuntime(false, !h.opt.NoDeadline)
	if err != nil {
		checked.Close(ctx)
		return nil, err
	}
	rt := &runtime{checked: checked, counted: counted, modules: map[string]*module{}}
	h.runtimes[p] = rt
	return rt, nil
}

// compile is r.CompileModule, with a panic in wazero (a malformed module it does not expect)
// returned as an error rather than taking the gateway down.
func compile(ctx context.Context, r wazero.Runtime, b []byte) (cm wazero.CompiledModule, err error) {
	defer func() {
		if p := recover(); p != nil {
			cm, err = nil, fmt.Errorf("wazero panicked: %v", p)
		}
	}()
	return r.CompileModule(ctx, b)
}

// forceChecked leaves every module to wazero's check, as for one the rewriter does not know
// (tests of that path).
var forceChecked = false

// errDeadline ends a counted module's call whose deadline passed.
var errDeadline = errors.New("deadline exceeded")

// schedYield is WASI's sched_yield for counted modules, called every yieldEvery loop
// iterations: it ends the call once its deadline has passed or its context is done.
func schedYield(ctx context.Context, _ api.Module, stack []uint64) {
	if e, ok := ctx.Value(callKey{}).(*guestEnv); ok && e.cur != nil {
		c := e.cur
		if c.deadline != 0 && monotonic() > c.deadline {
			c.timedOut = true
			panic(errDeadline)
		}
		if c.ctx != nil && c.ctx.Err() != nil {
			panic(errDeadline)
		}
	}
	if ctx.Err() != nil {
		panic(errDeadline)
	}
	stack[0] = 0
}

// module is one version of a compiled file.
type module struct {
	path     string
	r        wazero.Runtime // the runtime it is compiled for
	counted  bool           // instrumented: deadlines checked by counting loop iterations
	compiled wazero.CompiledModule
	kind     Kind
	mtime    time.Time
	size     int64
	hash     [32]byte
}

// load compiles the file at path for rt, or returns the version already compiled when the file
// has not changed. h.mu is held.
func (h *Host) load(ctx context.Context, rt *runtime, path string) (*module, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("transform module: %w", err)
	}
	if m := rt.modules[path]; m != nil && m.mtime.Equal(st.ModTime()) && m.size == st.Size() {
		return m, nil
	}
	m, err := h.compile(ctx, rt, path)
	if err != nil {
		return nil, err
	}
	m.mtime, m.size = st.ModTime(), st.Size()
	if old := rt.modules[path]; old != nil && old.hash == m.hash {
		m.compiled.Close(ctx)
		old.mtime, old.size = m.mtime, m.size
		return old, nil
	}
	rt.modules[path] = m
	return m, nil
}

// compile reads, compiles and classifies a module, with the reasons an integrator needs. A
// module that can count its loop iterations is instrumented and compiled for rt.counted.
func (h *Host) compile(ctx context.Context, rt *runtime, path string) (*module, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("transform module: %w", err)
	}
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return nil, fmt.Errorf("transform module %s is not a WebAssembly binary (no \\0asm header)", path)
	}
	if b, err = checkModule(b); err != nil {
		return nil, fmt.Errorf("transform module %s is malformed: %w", path, err)
	}
	m := &module{path: path, r: rt.checked, hash: sha256.Sum256(b)}
	var cm wazero.CompiledModule
	if !h.opt.NoDeadline && !forceChecked {
		if ib, ierr := instrument(b); ierr == nil {
			if cm, err = compile(ctx, rt.counted, ib); err == nil {
				m.r, m.counted = rt.counted, true
			} else {
				h.opt.Logger.Warn("instrumented transform module does not compile; wazero checks its deadline instead", "module", path, "err", err)
			}
		}
	}
	if cm == nil && h.opt.NoDeadline {
		cm, _ = compile(ctx, rt.checked, structure(b)) // as fast as the instrumented module runs
	}
	if cm == nil {
		if cm, err = compile(ctx, rt.checked, b); err != nil {
			return nil, fmt.Errorf("transform module %s does not compile: %w", path, err)
		}
	}
	m.compiled = cm
	exports := cm.ExportedFunctions()
	switch {
	case exports["transform"] != nil:
		m.kind = Reactor
		fn := exports["transform"]
		if p, rs := fn.ParamTypes(), fn.ResultTypes(); len(p) != 1 || p[0] != api.ValueTypeI32 || len(rs) != 1 || rs[0] != api.ValueTypeI32 {
			cm.Close(ctx)
			return nil, fmt.Errorf("transform module %s: transform must be (i32) -> i32", path)
		}
		if _, ok := cm.ExportedMemories()["memory"]; !ok {
			cm.Close(ctx)
			return nil, fmt.Errorf("transform module %s: a reactor module must export its memory", path)
		}
	case exports["_start"] != nil:
		m.kind = Command
	default:
		cm.Close(ctx)
		return nil, fmt.Errorf("transform module %s exports neither transform (reactor) nor _start (command)", path)
	}
	for _, imp := range cm.ImportedFunctions() {
		mod, name, _ := imp.Import()
		if mod != abiModule && mod != wasi_snapshot_preview1.ModuleName {
			cm.Close(ctx)
			return nil, fmt.Errorf("transform module %s imports %s.%s: only %q and %q are provided", path, mod, name, abiModule, wasi_snapshot_preview1.ModuleName)
		}
		if mod == abiModule && !abiFunctions[name] {
			cm.Close(ctx)
			return nil, fmt.Errorf("transform module %s imports %s.%s, which ABI v1 does not have", path, mod, name)
		}
	}
	return m, nil
}

// Provision compiles every transform of the config (so a bad module is reported when the config
// is loaded, not at the first delivery) and drops the pools of endpoints that no longer have one.
func (h *Host) Provision(ctx context.Context, cfg *config.Config) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fast.Clear()
	h.fastN = 0
	var errs []error
	live := map[poolKey]bool{}
	for _, ws := range cfg.Workspaces {
		for _, ep := range ws.Endpoints {
			if ep.Transform == nil {
				continue
			}
			p := pages(ep.Transform.MemoryLimit)
			rt, err := h.runtimeFor(ctx, p)
			if err != nil {
				errs = append(errs, fmt.Errorf("endpoint %s: %w", ep.ID, err))
				continue
			}
			if _, err := h.load(ctx, rt, ep.Transform.Module); err != nil {
				errs = append(errs, fmt.Errorf("endpoint %s: %w", ep.ID, err))
				continue
			}
			live[poolKey{ep.ID, ep.Transform.Module, p}] = true
		}
	}
	for k, p := range h.pools {
		if !live[k] {
			p.retire()
			delete(h.pools, k)
		}
	}
	return errors.Join(errs...)
}

// Check compiles a transform's module and checks its exports and imports, as Provision does,
// without keeping anything for deliveries (ringgate check).
func (h *Host) Check(ctx context.Context, t *config.Transform) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	rt, err := h.runtimeFor(ctx, pages(t.MemoryLimit))
	if err != nil {
		return err
	}
	_, err = h.load(ctx, rt, t.Module)
	return err
}

// poolFor returns the endpoint's pool on the module's current version.
func (h *Host) poolFor(ctx context.Context, ep *config.Endpoint) (*pool, error) {
	key := poolKey{ep.ID, ep.Transform.Module, pages(ep.Transform.MemoryLimit)}
	cfg := ep.Transform.Config
	if v, ok := h.fast.Load(ep); ok {
		if f := v.(fastPool); !f.p.gone.Load() && f.p.pages == key.pages && f.p.mod.path == key.path && f.config == mapID(cfg) {
			return f.p, nil
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errors.New("plugin host is closed")
	}
	if p := h.pools[key]; p != nil {
		if maps.Equal(p.config, cfg) {
			h.remember(ep, p)
			return p, nil
		}
		// the config changed: new instances, so that the one an instance sees never changes
		p.retire()
		delete(h.pools, key)
	}
	rt, err := h.runtimeFor(ctx, key.pages)
	if err != nil {
		return nil, err
	}
	m, err := h.load(ctx, rt, ep.Transform.Module)
	if err != nil {
		return nil, err
	}
	p := newPool(m, h.opt.PoolSize, key.pages, cfg)
	h.pools[key] = p
	h.remember(ep, p)
	return p, nil
}

// fastPool is an endpoint's pool as fast remembers it, with the identity of the config map it
// was looked up with (a config version's maps do not change).
type fastPool struct {
	p      *pool
	config uintptr
}

// mapID is a map's identity (0: nil).
func mapID(m map[string]string) uintptr { return reflect.ValueOf(m).Pointer() }

// remember adds ep's pool to fast, which a caller passing a new endpoint value on every call
// would otherwise grow without end: past maxFast entries it starts again. h.mu is held.
func (h *Host) remember(ep *config.Endpoint, p *pool) {
	if h.fastN++; h.fastN > maxFast {
		h.fast.Clear()
		h.fastN = 1
	}
	h.fast.Store(ep, fastPool{p, mapID(ep.Transform.Config)})
}

// maxFast bounds the endpoints fast remembers (a config has far fewer).
const maxFast = 4096

// watch swaps the pools of modules whose file changed, so new calls use the new version while
// calls in flight finish on the old one.
func (h *Host) watch() {
	defer h.wg.Done()
	t := time.NewTicker(h.opt.CheckEvery)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.checkFiles()
		}
	}
}

func (h *Host) checkFiles() {
	ctx := context.Background()
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, p := range h.pools {
		cur := p.mod
		st, err := os.Stat(cur.path)
		if err != nil || (st.ModTime().Equal(cur.mtime) && st.Size() == cur.size) {
			continue
		}
		m, err := h.load(ctx, h.runtimes[k.pages], cur.path)
		if err != nil {
			h.opt.Logger.Error("changed transform module refused; the previous version stays", "module", cur.path, "err", err)
			continue
		}
		if m == cur {
			continue
		}
		h.pools[k] = newPool(m, h.opt.PoolSize, k.pages, p.config)
		p.retire()
		h.opt.Logger.Info("transform module reloaded", "module", cur.path, "endpoint", k.endpoint)
	}
}

// Transform runs the endpoint's transform on body.
func (h *Host) Transform(ctx context.Context, ep *config.Endpoint, meta delivery.TransformMeta, body []byte) (delivery.TransformResult, error) {
	t := ep.Transform
	if len(body) > MaxInput {
		return delivery.TransformResult{}, fmt.Errorf("payload of %d bytes exceeds the transform input limit of 1 MiB", len(body))
	}
	p, err := h.poolFor(ctx, ep)
	if err != nil {
		return delivery.TransformResult{}, err
	}
	st := callPool.Get().(*call)
	res, err := h.transform(ctx, t, p, st, meta, body)
	*st = call{logs: cappedLog{b: st.logs.b[:0]}} // nothing of the call kept: only the log's room
	callPool.Put(st)
	return res, err
}

// Recycle takes back a body Transform returned once it is no longer used (the delivery engine
// hands it back when its attempt is over), for a later call's output to be written into: a
// transform's body then costs no allocation. The caller must not touch body afterwards.
func (h *Host) Recycle(body []byte) { h.bodies.put(body) }

// bodyPool keeps recycled bodies, at most maxPooledBodies of up to maxPooledBody bytes each
// (an odd large body is left to the garbage collector).
type bodyPool struct {
	mu   sync.Mutex
	free [][]byte
}

const (
	maxPooledBodies = 64
	maxPooledBody   = 16 << 10
)

// get returns an empty, non-nil buffer: a recycled one, or a new one of capacity n. A nil pool
// (a module's initialization, which has no delivery) has none.
func (p *bodyPool) get(n int) []byte {
	if p != nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		if k := len(p.free); k > 0 {
			b := p.free[k-1]
			p.free = p.free[:k-1]
			return b
		}
	}
	return make([]byte, 0, n)
}

func (p *bodyPool) put(b []byte) {
	if cap(b) == 0 || cap(b) > maxPooledBody {
		return
	}
	p.mu.Lock()
	if len(p.free) < maxPooledBodies {
		p.free = append(p.free, b[:0])
	}
	p.mu.Unlock()
}

// started anchors the monotonic clock calls are timed on: time.Since(started) reads one clock,
// where time.Now reads two, and a call reads it at least twice.
var started = time.Now()

func monotonic() time.Duration { return time.Since(started) }

// callPool keeps call states from one call to the next: a call whose body is recycled and whose
// headers are those of its instance's last call allocates nothing.
var callPool = sync.Pool{New: func() any { return new(call) }}

func (h *Host) transform(ctx context.Context, t *config.Transform, p *pool, st *call, meta delivery.TransformMeta, body []byte) (delivery.TransformResult, error) {
	st.ctx, st.input, st.config, st.meta, st.attempt = ctx, body, t.Config, meta, meta.Attempt
	st.headers, st.bodies = st.hbuf[:0], &h.bodies
	start := monotonic()
	switch {
	case h.opt.NoDeadline:
	case p.mod.counted:
		// sched_yield, called every yieldEvery loop iterations, checks the time: no timer
		st.deadline = start + t.Timeout
	default:
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.Timeout)
		defer cancel()
	}
	code, err := p.run(ctx, st)
	res := delivery.TransformResult{Logs: st.logs.String()}
	switch {
	case st.sent != nil:
		res.Headers = st.sent
	case len(st.headers) > 0:
		res.Headers = slices.Clone(st.headers) // st goes back to callPool
	}
	if err != nil {
		switch {
		case st.timedOut || ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
			return res, fmt.Errorf("transform timed out after %s", t.Timeout)
		case st.breach != "":
			return res, fmt.Errorf("transform %s", st.breach)
		case ctx.Err() != nil:
			return res, fmt.Errorf("transform stopped: %v", ctx.Err())
		}
		return res, fmt.Errorf("transform trapped: %v", trim(err))
	}
	stats.calls.Add(1)
	stats.nanos.Add(int64(monotonic() - start))
	switch {
	case code == 0:
		res.Body = st.output // nil: the original payload
		if p.mod.kind == Command && st.output == nil {
			res.Drop = true // a command that printed nothing drops the delivery
		}
	case code == 1:
		res.Drop = true
	default:
		msg := st.errMsg
		if msg == "" {
			msg = "no message (error_set was not called)"
		}
		return res, fmt.Errorf("transform failed (code %d): %s", code, msg)
	}
	return res, nil
}

// stats count successful calls, for metrics.
var stats struct{ calls, nanos atomic.Int64 }

// Stats reports successful transform calls and their total time.
func Stats() (calls int64, total time.Duration) {
	return stats.calls.Load(), time.Duration(stats.nanos.Load())
}

// trim keeps the first line of a guest error (wazero appends the wasm stack trace) and caps it.
func trim(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

package plugins

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// initTimeout bounds a module's start (_initialize of a reactor).
const initTimeout = 5 * time.Second

// epoch is the wall clock every call sees: guests are deterministic.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// pool keeps reactor instances of one module version for one endpoint, one call at a time each.
type pool struct {
	mod    *module
	pages  uint32            // the memory cap
	config map[string]string // the transform's config: an instance's never changes
	free   chan *instance
	n      atomic.Int32 // instances alive
	size   int32
	gone   atomic.Bool
}

func newPool(m *module, size int, pages uint32, config map[string]string) *pool {
	return &pool{mod: m, free: make(chan *instance, size), size: int32(size), pages: pages, config: maps.Clone(config)}
}

// retire closes the idle instances; busy ones close when their call returns.
func (p *pool) retire() {
	p.gone.Store(true)
	for {
		select {
		case inst := <-p.free:
			inst.close()
		default:
			return
		}
	}
}

// instance is one instantiated reactor with what calls reuse.
type instance struct {
	ctx   context.Context // holds env for the host functions of a counted module's calls
	m     api.Module
	fn    api.Function
	stack []uint64
	env   *guestEnv
	depth api.MutableGlobal // the call depth of an instrumented module (nil: none)
	memo  headerMemo
	sent  [][2]string // the headers of the last call's result, never changed once handed out
}

func (i *instance) close() { i.m.Close(context.Background()) }

// guestEnv is what the guest sees of the world: a fixed wall clock, a nanotime that only moves
// forward, a seeded random stream reset for every call, and stdout and stderr into the log.
type guestEnv struct {
	cur   *call
	nanos int64
	rnd   *rand.ChaCha8
	wall  int64
}

var seed = [32]byte{'r', 'i', 'n', 'g', 'g', 'a', 't', 'e'}

// reset prepares the environment for a call (every use starts with one).
func (e *guestEnv) reset(c *call) {
	e.cur = c
	e.rnd = nil // seeded again at the call's first read: most calls read none
	e.wall = 0
}

func (e *guestEnv) Read(p []byte) (int, error) {
	if e.rnd == nil {
		e.rnd = rand.NewChaCha8(seed)
	}
	return e.rnd.Read(p)
}

func (e *guestEnv) Write(p []byte) (int, error) {
	if e.cur != nil {
		e.cur.logs.write(p) // without copying all of p first: a guest may write megabytes
	}
	return len(p), nil
}

func (e *guestEnv) config(cfg wazero.ModuleConfig) wazero.ModuleConfig {
	return cfg.WithName("").
		WithRandSource(e).
		WithWalltime(func() (int64, int32) {
			t := epoch.Add(time.Duration(e.wall) * time.Microsecond)
			e.wall++
			return t.Unix(), int32(t.Nanosecond())
		}, sys.ClockResolution(1000)).
		WithNanotime(func() int64 { e.nanos += 1000; return e.nanos }, sys.ClockResolution(1000)).
		WithNanosleep(func(ns int64) { e.nanos += ns })
}

// get takes a free instance, makes one while the pool has room, or waits for one until ctx is
// done or c's deadline passes.
func (p *pool) get(ctx context.Context, c *call) (*instance, error) {
	select {
	case inst := <-p.free:
		return inst, nil
	default:
	}
	if p.n.Add(1) <= p.size {
		inst, err := p.instantiate()
		if err != nil {
			p.n.Add(-1)
		}
		return inst, err
	}
	p.n.Add(-1)
	var expired <-chan time.Time
	if c.deadline != 0 {
		t := time.NewTimer(c.deadline - monotonic())
		defer t.Stop()
		expired = t.C
	}
	select {
	case inst := <-p.free:
		return inst, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-expired:
		c.timedOut = true
		return nil, errDeadline
	}
}

func (p *pool) instantiate() (*instance, error) {
	env := &guestEnv{}
	cfg := env.config(wazero.NewModuleConfig()).WithStdout(env).WithStderr(env).WithStartFunctions()
	if p.mod.compiled.ExportedFunctions()["_initialize"] != nil {
		cfg = cfg.WithStartFunctions("_initialize")
	}
	ctx, cancel := context.WithTimeout(context.Background(), initTimeout)
	defer cancel()
	env.reset(&call{ctx: ctx})
	m, err := p.mod.r.InstantiateModule(context.WithValue(ctx, callKey{}, env), p.mod.compiled, cfg)
	if err != nil {
		return nil, fmt.Errorf("instantiate %s: %w", p.mod.path, err)
	}
	depth, _ := m.ExportedGlobal(DepthExport).(api.MutableGlobal)
	env.cur = nil
	return &instance{ctx: context.WithValue(context.Background(), callKey{}, env), m: m,
		fn: m.ExportedFunction("transform"), stack: make([]uint64, 1), env: env, depth: depth}, nil
}

func (p *pool) put(inst *instance) {
	if p.gone.Load() {
		inst.close()
		p.n.Add(-1)
		return
	}
	select {
	case p.free <- inst:
	default:
		inst.close()
		p.n.Add(-1)
	}
}

// run calls the module once: a pooled reactor instance, or a fresh command instance.
func (p *pool) run(ctx context.Context, c *call) (uint32, error) {
	if p.mod.kind == Command {
		return p.runCommand(ctx, c)
	}
	inst, err := p.get(ctx, c)
	if err != nil {
		return 0, err
	}
	inst.env.reset(c)
	c.memo = &inst.memo
	if inst.depth != nil {
		inst.depth.Set(0) // a trapped call may have left it anywhere
	}
	inst.stack[0] = api.EncodeI32(int32(len(c.input)))
	callCtx := inst.ctx // a counted module's deadline and ctx are checked by sched_yield, with c
	if !p.mod.counted {
		callCtx = context.WithValue(ctx, callKey{}, inst.env) // wazero's check watches ctx
	}
	err = inst.fn.CallWithStack(callCtx, inst.stack)
	inst.env.cur = nil
	if err != nil {
		if inst.depth != nil && c.breach == "" && api.DecodeU32(inst.depth.Get()) > MaxCallDepth {
			c.breach = fmt.Sprintf("nested its calls deeper than %d and trapped", MaxCallDepth)
		}
		if mem := inst.m.Memory(); mem != nil && c.breach == "" && mem.Size() >= p.pages*65536 {
			c.breach = fmt.Sprintf("reached its memory limit of %d MiB and trapped: %v", p.pages/16, trim(err))
		}
		// A trap, a timeout or a breach may leave the instance broken: discard it.
		inst.close()
		p.n.Add(-1)
		return 0, err
	}
	code := api.DecodeU32(inst.stack[0])
	if len(c.headers) > 0 {
		if !slices.Equal(inst.sent, c.headers) {
			inst.sent = slices.Clip(slices.Clone(c.headers))
		}
		c.sent = inst.sent
	}
	p.put(inst)
	return code, nil
}

// cappedOut is a command's standard output, at most MaxOutput bytes.
type cappedOut struct {
	buf bytes.Buffer
	c   *call
}

func (o *cappedOut) Write(p []byte) (int, error) {
	if o.buf.Len()+len(p) > MaxOutput {
		o.c.breach = "output exceeds the 1 MiB limit"
		return 0, errors.New("output limit reached")
	}
	return o.buf.Write(p)
}

// runCommand runs a WASI command: the payload on standard input, the body from standard output,
// standard error as the failure message. Exit 0 with output delivers it; with none, drops.
func (p *pool) runCommand(ctx context.Context, c *call) (uint32, error) {
	env := &guestEnv{}
	env.reset(c)
	ctx = context.WithValue(ctx, callKey{}, env)
	out := &cappedOut{c: c}
	var stderr bytes.Buffer
	cfg := env.config(wazero.NewModuleConfig()).
		WithStdin(bytes.NewReader(c.input)).WithStdout(out).WithStderr(&limited{&stderr, MaxError}).
		WithArgs("transform")
	m, err := p.mod.r.InstantiateModule(ctx, p.mod.compiled, cfg)
	if m != nil {
		m.Close(context.Background())
	}
	code := uint32(0)
	var exit *sys.ExitError
	if errors.As(err, &exit) && ctx.Err() == nil {
		code, err = exit.ExitCode(), nil
	}
	if err != nil {
		return 0, err
	}
	if c.breach != "" {
		return 0, errBreach
	}
	if code != 0 {
		c.errMsg = stderr.String()
		if c.errMsg == "" {
			c.errMsg = fmt.Sprintf("exited with code %d and no message on standard error", code)
		}
		return 2, nil
	}
	if out.buf.Len() > 0 {
		c.output = out.buf.Bytes()
	}
	return 0, nil
}

type limited struct {
	b *bytes.Buffer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

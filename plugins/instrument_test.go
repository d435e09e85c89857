package plugins

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
)

// Every module the tests build is either instrumented into a module that still compiles, or
// left to wazero's check; Go modules (which import sched_yield) and the loops of every kind
// (back through a br, a br_if under blocks, a br_table, to a loop taking a parameter) always
// are, so their deadline is counted (TestHostileGuests times each out).
func TestInstrumentEveryModule(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(modules, "*.wasm"))
	if len(files) == 0 {
		t.Fatal("no test modules")
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	counted := 0
	for _, f := range files {
		b, _ := os.ReadFile(f)
		b, err := checkModule(b)
		if err != nil {
			continue // refused before instrumenting (not wasm)
		}
		ib, err := instrument(b)
		if err != nil {
			if name := strings.TrimSuffix(filepath.Base(f), ".wasm"); slices.Contains(mustCount, name) {
				t.Fatalf("%s: not instrumented: %v", f, err)
			}
			continue
		}
		counted++
		if _, err := r.CompileModule(ctx, ib); err != nil {
			t.Fatalf("%s: the instrumented module does not compile: %v", f, err)
		}
	}
	t.Logf("%d of %d modules instrumented", counted, len(files))
}

var mustCount = []string{"gohighlevel", "yieldloop", "fanout", "calltree", "callchain", "loop", "tableloop", "paramloop", "nestedloop"}

// A guest spinning in a loop reaches a Go function every yieldEvery iterations, so a garbage
// collection that stops the world is never held up by it.
func TestCountedLoopLetsTheGCRun(t *testing.T) {
	h := newHost(t, Options{})
	var stop atomic.Bool
	gcs := make(chan int)
	go func() {
		n := 0
		for !stop.Load() {
			goruntime.GC()
			n++
		}
		gcs <- n
	}()
	start := time.Now()
	for i := 0; i < 5; i++ {
		ep := endpoint("yieldloop", mod("yieldloop"), nil)
		if _, err := h.Transform(context.Background(), ep, meta, []byte("{}")); err == nil || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("got %v", err)
		}
	}
	stop.Store(true)
	if n := <-gcs; n == 0 {
		t.Fatal("no garbage collection ran while the guest looped")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("five 100ms deadlines took %s", took)
	}
}

func FuzzInstrument(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(modules, "*.wasm"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil && len(b) < 64<<10 {
			f.Add(b)
		}
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter()) // validates as the compiler does, faster
	defer r.Close(ctx)
	f.Fuzz(func(t *testing.T, b []byte) {
		// checkModule stands between wazero and whatever the fuzzer makes: a module it lets
		// through that makes wazero allocate gigabytes ends this process.
		b, err := checkModule(b) // must not panic
		if err != nil {
			return
		}
		ib, err := instrument(b) // must not panic
		if _, cerr := compile(ctx, r, b); cerr != nil || err != nil {
			return // not a valid module to begin with (wazero's panics included), or not one to instrument
		}
		if _, err := compile(ctx, r, ib); err != nil {
			t.Fatalf("a valid module, instrumented, does not compile: %v", err)
		}
	})
}

// A counted module's deadline needs no timer while it runs, but a call waiting for a busy pool
// still ends at its own deadline.
func TestCountedDeadlineWhileWaitingForAnInstance(t *testing.T) {
	h := newHost(t, Options{PoolSize: 1})
	ep := endpoint("yieldloop", mod("yieldloop"), nil)
	ep.Transform.Timeout = 300 * time.Millisecond
	first := make(chan error, 1)
	go func() {
		_, err := h.Transform(context.Background(), ep, meta, []byte("{}"))
		first <- err
	}()
	time.Sleep(100 * time.Millisecond) // the first call holds the only instance
	waiting := *ep
	tr := *ep.Transform
	tr.Timeout = 50 * time.Millisecond
	waiting.Transform = &tr
	start := time.Now()
	_, err := h.Transform(context.Background(), &waiting, meta, []byte("{}"))
	if err == nil || !strings.Contains(err.Error(), "transform timed out after 50ms") {
		t.Fatalf("waiting call: %v", err)
	}
	if took := time.Since(start); took > 150*time.Millisecond {
		t.Fatalf("the waiting call took %s", took)
	}
	if err := <-first; err == nil || !strings.Contains(err.Error(), "transform timed out after 300ms") {
		t.Fatalf("first call: %v", err)
	}
}

// A counted module's call also ends when its caller's context is done (a delivery stopped at
// shutdown), long before its deadline: sched_yield checks the caller's context, which the call
// keeps, since the instance's own context never ends.
func TestCountedCallStopsWithItsContext(t *testing.T) {
	h := newHost(t, Options{})
	ep := endpoint("loop", mod("loop"), nil)
	ep.Transform.Timeout = 10 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := h.Transform(ctx, ep, meta, []byte("{}"))
	if err == nil || !strings.Contains(err.Error(), "transform stopped: context canceled") {
		t.Fatalf("got %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("stopped after %s", took)
	}
	if _, err := h.Transform(context.Background(), endpoint("identity", mod("identity"), nil), meta, []byte("{}")); err != nil {
		t.Fatalf("the host after a stopped call: %v", err)
	}
}

// A module without sched_yield gets the import added; every function index in it still leads
// to the same function, and it gives the same output as without instrumenting.
func TestInstrumentRemapsFunctionIndices(t *testing.T) {
	for _, noDeadline := range []bool{false, true} {
		h := newHost(t, Options{NoDeadline: noDeadline})
		ep := endpoint("remap", mod("remap"), nil)
		res, err := h.Transform(context.Background(), ep, meta, []byte("{}"))
		if err != nil || string(res.Body) != "ABCSB" {
			t.Fatalf("noDeadline %v: %v %q", noDeadline, err, res.Body)
		}
		p, err := h.poolFor(context.Background(), ep)
		if err != nil || p.mod.counted == noDeadline {
			t.Fatalf("noDeadline %v: counted %v, %v", noDeadline, p.mod.counted, err)
		}
	}
}

// A module the rewriter does not know keeps wazero's check, which enforces the same deadline.
func TestCheckedModulesTimeOutToo(t *testing.T) {
	forceChecked = true
	defer func() { forceChecked = false }()
	h := newHost(t, Options{})
	ep := endpoint("loop", mod("loop"), nil)
	start := time.Now()
	if _, err := h.Transform(context.Background(), ep, meta, []byte("{}")); err == nil || !strings.Contains(err.Error(), "transform timed out after 100ms") {
		t.Fatalf("got %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("took %s", took)
	}
	p, err := h.poolFor(context.Background(), ep)
	if err != nil || p.mod.counted {
		t.Fatalf("counted %v, %v", p.mod.counted, err)
	}
	if res, err := h.Transform(context.Background(), endpoint("good", mod("identity"), nil), meta, []byte(`{"a":1}`)); err != nil || string(res.Body) != `{"a":1}` {
		t.Fatalf("identity after the timeout: %v %q", err, res.Body)
	}
}

// Modules missing the sections the rewrite adds to (no types, imports or globals) get them, in
// their place.
func TestInstrumentSmallModules(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	for name, mod := range map[string][]byte{
		"empty": []byte("\x00asm\x01\x00\x00\x00"),
		// (module (func (export "f") (loop $l (br_if $l (i32.const 0)))))
		"one function": {0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00,
			0x03, 0x02, 0x01, 0x00, 0x07, 0x05, 0x01, 0x01, 0x66, 0x00, 0x00, 0x0a, 0x0b, 0x01, 0x09, 0x00,
			0x03, 0x40, 0x41, 0x00, 0x0d, 0x00, 0x0b, 0x0b},
	} {
		if _, err := r.CompileModule(ctx, mod); err != nil {
			t.Fatalf("%s: the test module itself: %v", name, err)
		}
		ib, err := instrument(mod)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cm, err := r.CompileModule(ctx, ib)
		if err != nil {
			t.Fatalf("%s: instrumented: %v", name, err)
		}
		if imp := cm.ImportedFunctions(); len(imp) != 1 {
			t.Fatalf("%s: %d imports", name, len(imp))
		} else if m, n, _ := imp[0].Import(); m != "wasi_snapshot_preview1" || n != "sched_yield" {
			t.Fatalf("%s: imports %s.%s", name, m, n)
		}
	}
}

// wazePanic makes wazero 1.12 panic in CompileModule.
var wazePanic = []byte("\x00asm\x01\x00\x00\x00\x01\x11\x04`\x00\x01\x7f`\x00\x00`\x01\x7f\x00`\x01\x7f\x01\x7f\x03\x04\x03\x01\x020\n?\x03\x1a\x010\x7fA\xe80A0\x03@A0A0x\" ! \vA0A0\x00\v\x19\x00A0E\x04@A0A0A0A0x\x10\x020000000\v\b\x00000000\v")

// A panic in wazero's compiler comes back as an error.
func TestCompileRecoversWazeroPanics(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	if _, err := compile(ctx, r, wazePanic); err == nil || !strings.Contains(err.Error(), "wazero panicked") {
		t.Fatalf("got %v", err)
	}
}

// Modules that declare more than they hold are refused before wazero decodes them: it would
// allocate what they declare first, and a failed allocation of gigabytes ends the process.
func TestMalformedModulesAreRefusedBeforeDecoding(t *testing.T) {
	const header = "\x00asm\x01\x00\x00\x00"
	huge := "\xff\xff\xff\xff\x07" // 2^31-1
	cases := map[string]string{
		"data segments":     "\x0b\x06" + huge + "\x00",
		"imports":           "\x02\x06" + huge + "\x00",
		"globals":           "\x06\x06" + huge + "\x00",
		"exports":           "\x07\x06" + huge + "\x00",
		"element segments":  "\x09\x06" + huge + "\x00",
		"function bodies":   "\x0a\x06" + huge + "\x00",
		"tables":            "\x04\x06" + huge + "\x00",
		"functions":         "\x03\x06" + huge + "\x00",
		"parameters":        "\x01\x08\x01\x60" + huge + "\x00",
		"a section's bytes": "\x0b" + huge,
		"data segment bytes": "\x05\x03\x01\x00\x01" + // one memory
			"\x0b\x0a\x01\x00\x41\x00\x0b" + huge,
		"locals": "\x01\x04\x01\x60\x00\x00\x03\x02\x01\x00" +
			"\x0a\x0a\x01\x08\x01" + huge + "\x7f\x0b",
		"a custom section's bytes": "\x00" + huge,
		// found by FuzzInstrument: wazero indexes the type section with the type index of a
		// called function it has not checked, and panics
		"type index": string(wazePanic[8:]),
		"table":      "\x04\x07\x01\x70\x00\x80\x80\x80\x40", // 2^27 entries, a gigabyte per instance
	}
	want := map[string]string{
		"a section's bytes": "declares 2147483647 bytes, 0 remain", "a custom section's bytes": "declares 2147483647 bytes",
		"locals": "more than 50000 locals", "data segment bytes": "data segment bytes: 2147483647 declared, 0 bytes remain",
		"type index": "type index 48, with 4 types",
		"table":      "a table of 134217728 entries (the limit is 1048576)",
	}
	for name := range cases {
		if want[name] == "" {
			want[name] = name + ": 2147483647 declared"
		}
	}
	dir := t.TempDir()
	h := newHost(t, Options{})
	for name, body := range cases {
		f := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".wasm")
		if err := os.WriteFile(f, []byte(header+body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := h.Transform(context.Background(), endpoint("bad", f, nil), meta, []byte("{}"))
		if err == nil || !strings.Contains(err.Error(), "is malformed") || !strings.Contains(err.Error(), want[name]) {
			t.Errorf("%s: got %v, want it malformed: %s", name, err, want[name])
		}
	}
}

// A table declared without a maximum gets the host's: growing past it fails as at any table's
// maximum, instead of allocating without end.
func TestTablesAreCapped(t *testing.T) {
	h := newHost(t, Options{})
	if _, err := h.Transform(context.Background(), endpoint("tablegrow", mod("tablegrow"), nil), meta, []byte("{}")); err != nil {
		t.Fatalf("the grow past the cap succeeded or failed oddly: %v", err)
	}
}

// A module naming a global or local the rewrite adds (invalid in the module as written, valid once
// rewritten) could reset the loop count or the call depth and run without a deadline. Such a
// module is left to wazero, which refuses it as it was written.
func TestGuestCannotReachWhatTheRewriteAdds(t *testing.T) {
	module := func(locals []byte, body ...byte) []byte {
		m := []byte("\x00asm\x01\x00\x00\x00")
		section := func(id byte, p []byte) { m = append(binary.AppendUvarint(append(m, id), uint64(len(p))), p...) }
		section(1, []byte{1, 0x60, 1, 0x7F, 1, 0x7F})
		section(3, []byte{1, 0})
		section(5, []byte{1, 0, 1})
		section(7, []byte{2, 6, 'm', 'e', 'm', 'o', 'r', 'y', 2, 0, 9, 't', 'r', 'a', 'n', 's', 'f', 'o', 'r', 'm', 0, 0})
		code := append(append([]byte(nil), locals...), body...)
		section(10, append(binary.AppendUvarint([]byte{1}, uint64(len(code))), code...))
		return m
	}
	dir := t.TempDir()
	for name, b := range map[string][]byte{
		// loop { global 0 (the loop counter once rewritten) = 100 }
		"counter": module([]byte{0}, 0x03, 0x40, 0x41, 100, 0x24, 0, 0x0C, 0, 0x0B, 0x41, 0, 0x0B),
		// local 2 (the call depth once rewritten) = 0; recurse
		"depth": module([]byte{0}, 0x41, 0, 0x21, 2, 0x20, 0, 0x10, 0, 0x0B),
		// loop { local 1 (the countdown's scratch once rewritten) = 1 }
		"scratch": module([]byte{0}, 0x03, 0x40, 0x41, 1, 0x21, 1, 0x0C, 0, 0x0B, 0x41, 0, 0x0B),
		// a block of type 1: sched_yield's type () -> i32, which the rewrite adds
		"type": module([]byte{0}, 0x02, 1, 0x41, 5, 0x0B, 0x1A, 0x41, 0, 0x0B),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := instrument(b); err == nil && false {
				t.Fatal("instrumented")
			}
			path := filepath.Join(dir, name+".wasm")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			h := newHost(t, Options{})
			done := make(chan error, 1)
			go func() {
				_, err := h.Transform(context.Background(), endpoint(name, path, nil), meta, []byte("{}"))
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "does not compile") {
					t.Fatalf("got %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the guest ran on without a deadline")
			}
		})
	}
}

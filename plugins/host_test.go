package plugins

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/delivery"
	"github.com/ringgate/ringgate/gateway/events"
	"github.com/ringgate/ringgate/plugins/examples/gohighlevel/mapping"
)

// modules holds the test modules, built once: WAT files with wat2wasm (Debian's wabt), the Go
// GoHighLevel mapper with the standard toolchain.
var modules string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ringgate-wasm")
	if err != nil {
		panic(err)
	}
	modules = dir
	if err := BuildTestModules(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// BuildTestModules compiles testdata/*.wat, examples/wat/*.wat, the GoHighLevel example and the
// hostile Go guest testdata/gospin into dir.
func BuildTestModules(dir string) error {
	wats, _ := filepath.Glob("testdata/*.wat")
	ex, _ := filepath.Glob("examples/wat/*.wat")
	for _, f := range append(wats, ex...) {
		out := filepath.Join(dir, strings.TrimSuffix(filepath.Base(f), ".wat")+".wasm")
		if b, err := exec.Command("wat2wasm", f, "-o", out).CombinedOutput(); err != nil {
			return fmt.Errorf("wat2wasm %s (install wabt): %v\n%s", f, err, b)
		}
	}
	for name, pkg := range map[string]string{"gohighlevel": "./examples/gohighlevel", "gospin": "./testdata/gospin"} {
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", filepath.Join(dir, name+".wasm"), pkg)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOWASM=satconv,signext") // as make plugins
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", name, err, b)
		}
	}
	b, err := os.ReadFile("testdata/notwasm.wasm")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "notwasm.wasm"), b, 0o644)
}

func mod(name string) string { return filepath.Join(modules, name+".wasm") }

func newHost(t testing.TB, opt Options) *Host {
	t.Helper()
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h, err := NewHost(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func endpoint(id, module string, cfg map[string]string) *config.Endpoint {
	return &config.Endpoint{ID: id, URL: "https://crm.example.com/hook", Transform: &config.Transform{
		Module: module, Config: cfg, Timeout: 100 * time.Millisecond, MemoryLimit: 64 << 20,
	}}
}

var meta = delivery.TransformMeta{Event: "call.completed", EndpointID: "crm", EndpointURL: "https://crm.example.com/hook", DeliveryID: "msg_1", WorkspaceID: 1, Attempt: 1}

func sample(t testing.TB, typ string) []byte {
	ev, err := events.Sample(typ, events.Workspace{ID: 1, Name: "My Workspace"}, events.SampleTime)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ev.Marshal()
	return b
}

func TestIdentity(t *testing.T) {
	h := newHost(t, Options{})
	body := sample(t, "call.completed")
	for i := 0; i < 3; i++ { // pooled instances are reused
		res, err := h.Transform(context.Background(), endpoint("crm", mod("identity"), nil), meta, body)
		if err != nil || string(res.Body) != string(body) || res.Drop {
			t.Fatalf("identity: %v drop=%v body=%.60s", err, res.Drop, res.Body)
		}
	}
}

func TestEventHeaderExample(t *testing.T) {
	h := newHost(t, Options{})
	ep := endpoint("crm", mod("event-header"), map[string]string{"drop": "call.started"})
	res, err := h.Transform(context.Background(), ep, meta, sample(t, "call.completed"))
	if err != nil || res.Body != nil || res.Drop || len(res.Headers) != 1 || res.Headers[0] != [2]string{"X-Ringgate-Event", "call.completed"} {
		t.Fatalf("event-header: %v %+v", err, res)
	}
	m := meta
	m.Event = "call.started"
	res, err = h.Transform(context.Background(), ep, m, sample(t, "call.started"))
	if err != nil || !res.Drop || !strings.Contains(res.Logs, "info: filtered by config") {
		t.Fatalf("filter: %v %+v", err, res)
	}
}

// The host hands back header strings a guest set before on the same instance, and a value that
// changed is taken anew.
func TestHeadersFollowEachCall(t *testing.T) {
	h := newHost(t, Options{PoolSize: 1})
	ep := endpoint("crm", mod("event-header"), nil)
	var earlier []delivery.TransformResult
	evs := []string{"call.completed", "call.missed", "call.missed", "call.completed"}
	for _, ev := range evs {
		m := meta
		m.Event = ev
		res, err := h.Transform(context.Background(), ep, m, sample(t, ev))
		if err != nil || len(res.Headers) != 1 || res.Headers[0] != [2]string{"X-Ringgate-Event", ev} {
			t.Fatalf("%s: %v %+v", ev, err, res.Headers)
		}
		earlier = append(earlier, res)
	}
	for i, res := range earlier { // a result's headers are its own: later calls reuse the call state
		if res.Headers[0][1] != evs[i] {
			t.Fatalf("call %d's headers became %+v", i, res.Headers)
		}
	}
	// the same headers as the call before: the same read-only slice, which no append can change
	if &earlier[2].Headers[0] != &earlier[1].Headers[0] || &earlier[1].Headers[0] == &earlier[0].Headers[0] {
		t.Fatal("headers equal to the last call's were not shared, or changed ones were")
	}
	if cap(earlier[2].Headers) != len(earlier[2].Headers) {
		t.Fatal("shared headers have room to append into")
	}
}

// A body handed back with Recycle is where a later call writes its output, so that a transform
// allocates nothing on the host's side; a body not handed back is never written into again.
func TestRecycledBodiesAreReused(t *testing.T) {
	h := newHost(t, Options{PoolSize: 1})
	ep := endpoint("crm", mod("gohighlevel"), nil)
	body := sample(t, "call.completed")
	transform := func() []byte {
		t.Helper()
		res, err := h.Transform(context.Background(), ep, meta, body)
		if err != nil || len(res.Body) == 0 {
			t.Fatalf("transform: %v %+v", err, res)
		}
		return res.Body
	}
	first := transform()
	want := string(first)
	second := transform()
	if unsafe.SliceData(second) == unsafe.SliceData(first) {
		t.Fatal("a body not handed back was written into")
	}
	h.Recycle(first)
	third := transform()
	if unsafe.SliceData(third) != unsafe.SliceData(first) {
		t.Fatal("a recycled body was not reused")
	}
	if string(second) != want || string(third) != want {
		t.Fatalf("bodies differ:\n%s\n%s\n%s", want, second, third)
	}
	allocs := testing.AllocsPerRun(100, func() { h.Recycle(transform()) })
	if allocs != 0 {
		t.Fatalf("a transform whose bodies are recycled allocates %.1f times a call, want 0", allocs)
	}
}

// An empty body written is sent empty: it is not the same as no body written (the payload),
// nor what a recycled body held.
func TestEmptyBodyIsSentEmpty(t *testing.T) {
	h := newHost(t, Options{})
	for _, left := range []string{"", "what an earlier body held"} {
		if left != "" {
			h.Recycle([]byte(left))
		}
		res, err := h.Transform(context.Background(), endpoint("crm", mod("emptybody"), nil), meta, sample(t, "call.completed"))
		if err != nil || res.Body == nil || len(res.Body) != 0 || res.Drop {
			t.Fatalf("empty body: %v body=%q drop=%v", err, res.Body, res.Drop)
		}
	}
}

// The Go kit asks the host for a config value once per instance; a config that changes (a
// reload) gets new instances, so a changed value is seen and a key that went away is absent.
func TestGoKitReadsConfigAnew(t *testing.T) {
	h := newHost(t, Options{PoolSize: 1})
	ep := endpoint("crm", mod("gohighlevel"), map[string]string{"tag": "PPC"})
	body := sample(t, "call.completed")
	for _, tag := range []string{"PPC", "PPC", "Organic", "", "Organic"} {
		ep.Transform.Config = map[string]string{"tag": tag}
		if tag == "" {
			ep.Transform.Config = nil
		}
		res, err := h.Transform(context.Background(), ep, meta, body)
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Tags []string }
		if err := json.Unmarshal(res.Body, &out); err != nil {
			t.Fatal(err)
		}
		want := []string{"Google Ads Campaign", "New Caller"}
		if tag != "" {
			want = append(want, tag)
		}
		if !slices.Equal(out.Tags, want) {
			t.Fatalf("tag %q: tags %q, want %q", tag, out.Tags, want)
		}
	}
}

// Each hostile guest fails its own call with the documented reason, and the host goes on
// serving a well-behaved module.
func TestHostileGuests(t *testing.T) {
	h := newHost(t, Options{})
	cases := []struct{ module, want string }{
		{"loop", "transform timed out after 100ms"},
		{"yieldloop", "transform timed out after 100ms"},
		{"fanout", "transform timed out after 100ms"},
		{"calltree", "transform timed out after 100ms"},
		{"callchain", "transform timed out after 100ms"},
		{"tableloop", "transform timed out after 100ms"},
		{"paramloop", "transform timed out after 100ms"},
		{"nestedloop", "transform timed out after 100ms"},
		{"membomb", "transform reached its memory limit of 4 MiB and trapped: wasm error: unreachable"},
		{"bigmem", "does not compile"},
		{"huge", "transform output of 2097152 bytes exceeds the 1 MiB limit"},
		{"trap", "transform trapped: wasm error: unreachable"},
		{"recurse", "transform nested its calls deeper than 100000 and trapped"},
		{"oob", "transform trapped: "},
		{"noexport", "exports neither transform (reactor) nor _start (command)"},
		{"badimport", "imports ringgate.open_socket, which ABI v1 does not have"},
		{"envimport", `imports env.abort: only "ringgate" and "wasi_snapshot_preview1" are provided`},
		{"notwasm", "is not a WebAssembly binary"},
		{"errorcode", "transform failed (code 2): payload has no phone number"},
		{"gospin spin", "transform timed out after 100ms"},
		{"gospin calls", "transform timed out after 100ms"},
		{"gospin recurse", "transform nested its calls deeper than 100000 and trapped"},
	}
	body := sample(t, "call.completed")
	for _, c := range cases {
		t.Run(c.module, func(t *testing.T) {
			name, mode, _ := strings.Cut(c.module, " ") // a Go guest's mode goes in its config
			ep := endpoint(c.module, mod(name), map[string]string{"mode": mode})
			if name == "recurse" || mode == "recurse" {
				// 100,000 frames take a WAT guest 20–180ms under the race detector (wazero grows
				// its stack by copying), and a Go guest longer still (Go grows its own the same
				// way): time enough to show the depth bound rather than the deadline.
				ep.Transform.Timeout = 10 * time.Second
			}
			if c.module == "membomb" {
				ep.Transform.MemoryLimit = 4 << 20
			}
			// compiled first (a Go module takes seconds under the race detector): the time
			// checked is the call's
			_ = h.Check(context.Background(), ep.Transform)
			start := time.Now()
			_, err := h.Transform(context.Background(), ep, meta, body)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Fatalf("took %s", took)
			}
			res, err := h.Transform(context.Background(), endpoint("good", mod("identity"), nil), meta, body)
			if err != nil || string(res.Body) != string(body) {
				t.Fatalf("the host stopped serving after %s: %v", c.module, err)
			}
		})
	}
	// The Go-style looping guest was instrumented: its deadline came from counting, not wazero.
	for _, name := range []string{"yieldloop", "fanout"} {
		p, err := h.poolFor(context.Background(), endpoint(name, mod(name), nil))
		if err != nil || !p.mod.counted {
			t.Fatalf("%s not instrumented: %v", name, err)
		}
	}
	// The looping guest keeps failing cleanly; the pool replaces discarded instances.
	for i := 0; i < 3; i++ {
		if _, err := h.Transform(context.Background(), endpoint("loop", mod("loop"), nil), meta, body); err == nil {
			t.Fatal("loop succeeded")
		}
	}
	// Input over 1 MiB is refused before the guest runs.
	if _, err := h.Transform(context.Background(), endpoint("good", mod("identity"), nil), meta, make([]byte, MaxInput+1)); err == nil || !strings.Contains(err.Error(), "1 MiB") {
		t.Fatalf("big input: %v", err)
	}
}

func TestHeadersAndReservedNames(t *testing.T) {
	h := newHost(t, Options{})
	res, err := h.Transform(context.Background(), endpoint("crm", mod("headers"), nil), meta, []byte("{}"))
	if err != nil || string(res.Body) != "10" || len(res.Headers) != 1 || res.Headers[0] != [2]string{"X-Crm-Key", "secret-123"} {
		t.Fatalf("headers: %v body=%q %+v", err, res.Body, res.Headers)
	}
}

func TestCommandModules(t *testing.T) {
	h := newHost(t, Options{})
	body := sample(t, "call.missed")
	res, err := h.Transform(context.Background(), endpoint("echo", mod("echo-command"), nil), meta, body)
	if err != nil || string(res.Body) != string(body) {
		t.Fatalf("echo: %v %.80s", err, res.Body)
	}
	res, err = h.Transform(context.Background(), endpoint("silent", mod("silent-command"), nil), meta, body)
	if err != nil || !res.Drop {
		t.Fatalf("silent: %v %+v", err, res)
	}
	_, err = h.Transform(context.Background(), endpoint("fail", mod("fail-command"), nil), meta, body)
	if err == nil || err.Error() != "transform failed (code 2): unsupported event" {
		t.Fatalf("fail: %v", err)
	}
}

// The Go mapper gives what the same mapping gives natively, byte for byte, every time.
func TestGoHighLevel(t *testing.T) {
	h := newHost(t, Options{})
	ep := endpoint("ghl", mod("gohighlevel"), map[string]string{"tag": "PPC"})
	ep.Transform.Timeout = 5 * time.Second // the first call compiles nothing, but be generous on a busy CI
	for _, typ := range events.Types {
		body := sample(t, typ)
		res, err := h.Transform(context.Background(), ep, meta, body)
		if err != nil {
			t.Fatalf("%s: %v (logs %s)", typ, err, res.Logs)
		}
		want, _ := mapping.Map(body, "PPC")
		if string(res.Body) != string(want) {
			t.Fatalf("%s:\n wasm %s\nnative %s", typ, res.Body, want)
		}
		if len(res.Headers) != 1 || res.Headers[0][0] != "X-Ringgate-Mapper" {
			t.Fatalf("headers %+v", res.Headers)
		}
	}
	got, _ := h.Transform(context.Background(), ep, meta, sample(t, "call.completed"))
	for _, want := range []string{`"phone":"+14155551234"`, `"name":"John Smith"`, `"first_name":"John"`, `"city":"San Francisco"`,
		`"source":"google"`, `"tags":["Google Ads Campaign","New Caller","PPC"]`, `"gclid":"CjwKCAiA-sample-gclid-123"`, `"call_duration":"145"`} {
		if !strings.Contains(string(got.Body), want) {
			t.Errorf("mapped body lacks %s: %s", want, got.Body)
		}
	}
	if _, err := h.Transform(context.Background(), ep, meta, []byte("not json")); err == nil || !strings.Contains(err.Error(), "not a ringgate event") {
		t.Fatalf("bad payload: %v", err)
	}
}

func TestHotReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.wasm")
	copyFile(t, mod("identity"), path)
	h := newHost(t, Options{CheckEvery: 10 * time.Millisecond})
	ep := endpoint("crm", path, nil)
	res, err := h.Transform(context.Background(), ep, meta, []byte(`{"a":1}`))
	if err != nil || string(res.Body) != `{"a":1}` {
		t.Fatalf("before: %v %s", err, res.Body)
	}
	copyFile(t, mod("headers"), path+".new")
	future := time.Now().Add(time.Hour)
	os.Chtimes(path+".new", future, future)
	os.Rename(path+".new", path)
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err = h.Transform(context.Background(), ep, meta, []byte(`{"a":1}`))
		if err == nil && string(res.Body) == "10" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the changed module was not picked up: %v %s", err, res.Body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A broken replacement is refused; the working version stays.
	os.WriteFile(path+".bad", []byte("garbage"), 0o644)
	os.Chtimes(path+".bad", future.Add(time.Hour), future.Add(time.Hour))
	os.Rename(path+".bad", path)
	time.Sleep(100 * time.Millisecond)
	if res, err = h.Transform(context.Background(), ep, meta, []byte(`{}`)); err != nil || string(res.Body) != "10" {
		t.Fatalf("after a broken file: %v %s", err, res.Body)
	}
}

func TestCompilationCacheOnDisk(t *testing.T) {
	cache := t.TempDir()
	cfg := &config.Config{Workspaces: []config.Workspace{{Endpoints: []config.Endpoint{*endpoint("ghl", mod("gohighlevel"), nil)}}}}
	h := newHost(t, Options{CacheDir: cache})
	start := time.Now()
	if err := h.Provision(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	cold := time.Since(start)
	h.Close()
	entries, _ := os.ReadDir(cache)
	if len(entries) == 0 {
		t.Fatal("nothing cached on disk")
	}
	h2 := newHost(t, Options{CacheDir: cache})
	start = time.Now()
	if err := h2.Provision(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	warm := time.Since(start)
	t.Logf("compile %s cold, %s from the disk cache", cold, warm)
	if warm > cold {
		t.Errorf("the disk cache did not help: %s then %s", cold, warm)
	}
	bad := &config.Config{Workspaces: []config.Workspace{{Endpoints: []config.Endpoint{*endpoint("x", mod("notwasm"), nil)}}}}
	if err := h2.Provision(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "endpoint x") {
		t.Fatalf("a bad module in the config: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Same input, config and metadata: same output, also when the guest reads clocks and randomness.
func TestDeterminism(t *testing.T) {
	h := newHost(t, Options{})
	ep := endpoint("ghl", mod("gohighlevel"), nil)
	ep.Transform.Timeout = 5 * time.Second
	body := sample(t, "call.completed")
	a, err := h.Transform(context.Background(), ep, meta, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		b, _ := h.Transform(context.Background(), ep, meta, body)
		if string(a.Body) != string(b.Body) {
			t.Fatal("output changed between calls")
		}
	}
}

// A guest's log keeps its first 4 KiB, marked as cut, however much the guest logs.
func TestLogIsCapped(t *testing.T) {
	h := newHost(t, Options{})
	res, err := h.Transform(context.Background(), endpoint("crm", mod("logloop"), nil), meta, []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	const mark = "\n[log truncated at 4 KiB]"
	if !strings.HasSuffix(res.Logs, mark) || len(res.Logs) != MaxLog+len(mark) || !strings.HasPrefix(res.Logs, "info: 0123") {
		t.Fatalf("log of %d bytes: %.40q … %q", len(res.Logs), res.Logs, res.Logs[max(0, len(res.Logs)-40):])
	}
}

// A guest writing megabytes to standard output at a time costs the host no more than the 4 KiB
// it keeps (each write was copied whole before the cap).
func TestBigWritesAreNotCopied(t *testing.T) {
	h := newHost(t, Options{})
	ep := endpoint("crm", mod("bigwrite"), nil)
	ep.Transform.MemoryLimit = 16 << 20
	if _, err := h.Transform(context.Background(), ep, meta, []byte("{}")); err != nil { // instance made
		t.Fatal(err)
	}
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	res, err := h.Transform(context.Background(), ep, meta, []byte("{}"))
	goruntime.ReadMemStats(&after)
	if err != nil || len(res.Logs) != MaxLog+len("\n[log truncated at 4 KiB]") {
		t.Fatalf("%v, a log of %d bytes", err, len(res.Logs))
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 8<<20 {
		t.Fatalf("writing 50 times 8 MB allocated %d MB on the host", n>>20)
	}
	// the body set 50 times over, 1 MB each: one buffer for the call
	ep = endpoint("crm", mod("rewrite"), nil)
	if _, err := h.Transform(context.Background(), ep, meta, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	goruntime.ReadMemStats(&before)
	res, err = h.Transform(context.Background(), ep, meta, []byte("{}"))
	goruntime.ReadMemStats(&after)
	if err != nil || len(res.Body) != 1000000 {
		t.Fatalf("%v, a body of %d bytes", err, len(res.Body))
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 8<<20 {
		t.Fatalf("setting the body 50 times allocated %d MB on the host", n>>20)
	}
}

// A header value with CR, LF or NUL is refused (it could smuggle a header into the request).
func TestFieldValue(t *testing.T) {
	for v, want := range map[string]bool{"gohighlevel/1": true, "": true, "a\r\nX-Evil: 1": false, "a\nb": false, "a\rb": false, "a\x00": false} {
		if got := fieldValue(v); got != want {
			t.Errorf("fieldValue(%q) = %v", v, got)
		}
	}
}

// A header pair accepted before comes back without a check or an allocation; a refused one is
// refused each time, and never remembered.
func TestHeaderMemo(t *testing.T) {
	var m headerMemo
	for i, c := range []struct {
		name, value string
		ok          bool
	}{
		{"X-Mapper", "gohighlevel/1", true},
		{"X-Mapper", "gohighlevel/1", true},
		{"X-Mapper", "gohighlevel/2", true},
		{"Signature", "forged", false},
		{"Signature", "forged", false},
		{"webhook-id", "msg_1", false},
		{"X-Evil", "a\r\nX-Injected: 1", false},
		{"Bad Name", "x", false},
		{"", "", false},
	} {
		h, ok := m.accept([]byte(c.name), []byte(c.value))
		if ok != c.ok || h != [2]string{c.name, c.value} {
			t.Errorf("%d: accept(%q, %q) = %q, %v", i, c.name, c.value, h, ok)
		}
	}
	for _, p := range m.pairs {
		if p[0] != "" && p[0] != "X-Mapper" {
			t.Errorf("a refused pair is remembered: %q", p)
		}
	}
	name, value := []byte("X-Mapper"), []byte("gohighlevel/1")
	first, _ := m.accept(name, value)
	if allocs := testing.AllocsPerRun(100, func() {
		if h, _ := m.accept(name, value); unsafe.StringData(h[0]) != unsafe.StringData(first[0]) {
			t.Fatal("an accepted pair was not handed back")
		}
	}); allocs != 0 {
		t.Fatalf("accepting a pair again allocates %.1f times", allocs)
	}
}

// poolFor's lock-free path: a caller passing a new endpoint value on every call leaves it bounded,
// and a pool retired by a config that drops the endpoint is not handed out again.
func TestPoolForFastPath(t *testing.T) {
	h := newHost(t, Options{})
	ep := endpoint("crm", mod("identity"), nil)
	body := sample(t, "call.completed")
	for i := 0; i < maxFast+500; i++ {
		e := *ep // a new endpoint value each call
		if _, err := h.Transform(context.Background(), &e, meta, body); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	h.fast.Range(func(any, any) bool { n++; return true })
	if n > maxFast {
		t.Fatalf("%d endpoints remembered, more than %d", n, maxFast)
	}
	first, err := h.poolFor(context.Background(), ep)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Provision(context.Background(), &config.Config{}); err != nil { // drops the endpoint
		t.Fatal(err)
	}
	if !first.gone.Load() {
		t.Fatal("the dropped endpoint's pool is not retired")
	}
	if _, err := h.Transform(context.Background(), ep, meta, body); err != nil {
		t.Fatal(err)
	}
	if again, _ := h.poolFor(context.Background(), ep); again == first {
		t.Fatal("a retired pool was handed out again")
	}
}

// Calls that wait for a pool's one instance all get it in turn, and the pool keeps one.
func TestPoolHandsInstancesToWaitingCalls(t *testing.T) {
	h := newHost(t, Options{PoolSize: 1})
	ep := endpoint("crm", mod("identity"), nil)
	ep.Transform.Timeout = 5 * time.Second
	body := sample(t, "call.completed")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				if _, err := h.Transform(context.Background(), ep, meta, body); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	p, err := h.poolFor(context.Background(), ep)
	if err != nil {
		t.Fatal(err)
	}
	if n := p.n.Load(); n != 1 {
		t.Fatalf("%d instances alive, want 1", n)
	}
}

// The config an instance sees never changes: a changed transform.config (a reload) gets new
// instances, an equal one (another map with the same contents) keeps them.
func TestConfigChangeStartsNewInstances(t *testing.T) {
	h := newHost(t, Options{PoolSize: 1})
	first := map[string]string{"a": "1"}
	ep := endpoint("crm", mod("stateful"), first)
	body := sample(t, "call.completed")
	for i, step := range []struct {
		config map[string]string
		calls  int // the instance's calls so far (stateful.wat counts them)
	}{
		{first, 1},
		{first, 2},
		{map[string]string{"a": "1"}, 3}, // equal: the same instance
		{map[string]string{"a": "2"}, 1}, // changed: a new one
		{map[string]string{"a": "2", "b": ""}, 1},
		{nil, 1},
		{map[string]string{}, 2}, // as empty as nil
	} {
		ep.Transform.Config = step.config
		res, err := h.Transform(context.Background(), ep, meta, body)
		if err != nil {
			t.Fatal(err)
		}
		if got := int(res.Body[0]) / 49; got != step.calls {
			t.Fatalf("step %d: the instance's call %d, want %d", i, got, step.calls)
		}
	}
}

//go:build !race

package plugins

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// This file's test runs without the race detector (make test runs it on its own): it compiles
// large modules, which wazero does several times slower under the detector, and races in the
// host are what the other tests look for.

// Real Go programs keep their meaning once structured: the test binaries of our own guest
// packages and of standard packages that panic and recover (encoding/json), sort, and grow
// their goroutines' stacks (regexp's backtracker) are built for wasip1, structured and
// instrumented as a transform would be, and must still pass.
func TestStructuredGoPassesItsTests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Go test binaries for wasip1")
	}
	// gowasm: built as make plugins builds the examples (WebAssembly 2.0's sign extension and
	// saturating conversions), or as Go does by default
	const v2 = "satconv,signext"
	pkgs := []struct{ pkg, dir, run, gowasm string }{
		{"./pdk/jsonpick", "pdk/jsonpick", "", v2},
		{"./examples/gohighlevel/mapping", "examples/gohighlevel/mapping", "", ""},
		{"encoding/json", "", "^Test(Marshal|Unmarshal|Indent|Compact|Decode|Encode|Valid|Number)", v2},
		{"sort", "", "^Test", ""},
		{"regexp", "", "^Test(Match|Find|Replace|Split|Backtrack)", ""},
		{"strconv", "", "^Test(Atoi|ParseInt|ParseUint|Itoa|FormatInt|Quote|Unquote)", v2},
	}
	dir := t.TempDir()
	ctx := context.Background()
	for _, p := range pkgs {
		t.Run(strings.TrimPrefix(p.pkg, "./"), func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(dir, strings.NewReplacer("/", "_", ".", "_").Replace(p.pkg)+".wasm")
			cmd := exec.Command("go", "test", "-c", "-o", out, p.pkg)
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOWASM="+p.gowasm)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go test -c %s: %v\n%s", p.pkg, err, b)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if b, err = checkModule(b); err != nil {
				t.Fatal(err)
			}
			total, structured, checked := countStructured(t, b)
			// Go's calls through function values, and loops it enters past their heads, are
			// structured too: a few functions in a hundred have one or the other
			if structured*100 < total*99 {
				t.Fatalf("%d of %d Go functions with jumps structured; expected 99 in 100", structured, total)
			}
			if checked < total/2 {
				t.Fatalf("%d Go functions rewritten for fewer bounds checks, of %d with jumps; expected half or more", checked, total)
			}
			ib, err := instrument(b)
			if err != nil {
				t.Fatal(err)
			}
			r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(testCache))
			defer r.Close(ctx)
			wasi_snapshot_preview1.MustInstantiate(ctx, r)
			args := []string{"test", "-test.short", "-test.count=1"}
			if p.run != "" {
				args = append(args, "-test.run="+p.run)
			}
			var stdout, stderr bytes.Buffer
			cfg := wazero.NewModuleConfig().WithArgs(args...).WithStdout(&stdout).WithStderr(&stderr).
				WithSysWalltime().WithSysNanotime().WithSysNanosleep().WithRandSource(nil)
			if p.dir != "" { // testdata, from the package's directory
				cfg = cfg.WithFSConfig(wazero.NewFSConfig().WithReadOnlyDirMount(p.dir, "/")).WithEnv("PWD", "/")
			}
			_, err = r.InstantiateWithConfig(ctx, ib, cfg)
			if code := exitCode(err); code != 0 || !strings.Contains(stdout.String(), "PASS") {
				t.Fatalf("structured %s: exit %d (%v)\n%s%s", p.pkg, code, err, tail(stdout.String()), tail(stderr.String()))
			}
			t.Logf("%d of %d Go functions with jumps structured, %d Go functions rewritten for fewer bounds checks; the tests pass", structured, total, checked)
		})
	}
}

var testCache = wazero.NewCompilationCache()

func exitCode(err error) uint32 {
	if err == nil {
		return 0
	}
	if e, ok := err.(*sys.ExitError); ok {
		return e.ExitCode()
	}
	return 1000
}

func tail(s string) string {
	if len(s) > 4000 {
		return "…" + s[len(s)-4000:]
	}
	return s
}

// countStructured returns how many of a module's Go functions have jumps (Go's dispatch loop),
// and how many of them structureGo rewrites.
func countStructured(t *testing.T, mod []byte) (total, structured, checked int) {
	t.Helper()
	secs, err := splitSections(mod)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := surveyModule(secs)
	if err != nil {
		t.Fatal(err)
	}
	w, err := newRewriter(sv, len(mod))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secs {
		if s.id != 10 {
			continue
		}
		fns, err := splitCode(s.payload, len(w.params))
		if err != nil {
			t.Fatal(err)
		}
		for i, fn := range fns {
			if g := (goFunc{body: fn, noRet: func(uint32) bool { return false }}); w.params[i] == 1 && g.parse() {
				total++
			}
		}
		structured, checked = structureBodies(fns, w.params, sv.funcImports)
	}
	return total, structured, checked
}

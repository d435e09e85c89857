package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ringgate plugin run, the integrator's harness, on the examples and on broken or stateful guests.
func TestPluginRun(t *testing.T) {
	root, _ := filepath.Abs("../..")
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", dir) // the compilation cache
	wat := func(name string) string {
		out := filepath.Join(dir, name+".wasm")
		if b, err := exec.Command("wat2wasm", filepath.Join(root, "plugins/testdata", name+".wat"), "-o", out).CombinedOutput(); err != nil {
			t.Fatalf("wat2wasm: %v %s", err, b)
		}
		return out
	}
	ghl := filepath.Join(root, "plugins/examples/gohighlevel/gohighlevel.wasm")
	header := filepath.Join(root, "plugins/examples/wat/event-header.wasm")
	for _, f := range []string{ghl, header} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v: run make plugins first (make test does)", err)
		}
	}
	input := filepath.Join(dir, "payload.json")
	os.WriteFile(input, []byte(`{"event":"call.missed","data":{"from_number":"+15550009999","is_first_time_caller":false}}`), 0o644)

	for _, c := range []struct {
		name   string
		args   []string
		code   int
		stdout string // a JSON body's "phone", or the raw body
		stderr []string
	}{
		{"sample event, config, repeated", []string{"--module", ghl, "--config", "tag=PPC", "--repeat", "50"}, 0, "+14155551234",
			[]string{"header: X-Ringgate-Mapper: gohighlevel/1", "result: deliver", "repeat: 50 more calls", "each with the result of the first"}},
		{"payload file", []string{"--module", ghl, "--input", input}, 0, "+15550009999", []string{"result: deliver"}},
		{"drop", []string{"--module", header, "--event", "call.started", "--config", "drop=call.started"}, 0, "",
			[]string{"result: drop (the delivery would be recorded as filtered)"}},
		{"original payload", []string{"--module", header, "--event", "call.missed", "--repeat", "3"}, 0, "+14155551234",
			[]string{"header: X-Ringgate-Event: call.missed", "result: deliver the original payload", "repeat: 3 more calls"}},
		{"timeout", []string{"--module", wat("loop"), "--timeout", "20ms"}, 1, "", []string{"transform timed out after 20ms"}},
		{"state kept between calls", []string{"--module", wat("stateful"), "--repeat", "3"}, 1, "1",
			[]string{"call 2 gave a different body than call 1 for the same input"}},
		{"memory cap", []string{"--module", wat("bigmem"), "--memory", "1MiB"}, 1, "", []string{"memory"}},
		{"not wasm", []string{"--module", filepath.Join(root, "plugins/testdata/notwasm.wasm")}, 1, "", []string{"plugin run:"}},
		{"no module", []string{}, 2, "", []string{"--module is required"}},
		{"bad memory", []string{"--module", ghl, "--memory", "lots"}, 2, "", []string{"--memory takes a size like 64MiB"}},
		{"bad config", []string{"--module", ghl, "--config", "tag"}, 2, "", []string{`"tag" is not KEY=VALUE`}},
		{"unknown event", []string{"--module", ghl, "--event", "call.begun"}, 2, "", []string{"call.begun"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := plugin(append([]string{"run"}, c.args...), &stdout, &stderr)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, c.code, stdout.String(), stderr.String())
			}
			for _, s := range c.stderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr.String())
				}
			}
			switch body := bytes.TrimSpace(stdout.Bytes()); {
			case c.stdout == "" || c.code != 0:
				if c.code == 0 && len(body) != 0 {
					t.Errorf("stdout: %s", body)
				}
			case body[0] == '{':
				var m struct {
					Phone string `json:"phone"`
					Data  struct {
						From string `json:"from_number"`
					} `json:"data"`
				}
				json.Unmarshal(body, &m)
				if m.Phone != c.stdout && m.Data.From != c.stdout {
					t.Errorf("stdout %s, want %s in it", body, c.stdout)
				}
			default:
				t.Errorf("stdout: %q", body)
			}
		})
	}
}

package config

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// base is a valid config; cases below break one thing each.
const base = `server:
  listen: 127.0.0.1:8080
  public_url: https://calls.example.com
  admin: {listen: 127.0.0.1:8081, token: "0123456789abcdef"}
storage: {backend: badger, path: ./data}
twilio: {account_sid: AC123, auth_token: secret}
workspaces:
  - id: 1
    name: My Workspace
    campaigns:
      - id: 42
        name: Google Ads Campaign
        forward_to: "+15550001111"
        numbers:
          - {id: 1, number: "+18005551234", name: "Main", pool: true}
    endpoints:
      - id: ghl
        name: GHL
        url: https://services.leadconnectorhq.com/hooks/x
        events: [call.completed, call.missed]
`

func noEnv(string) (string, bool) { return "", false }

func TestValidConfigAndDefaults(t *testing.T) {
	cfg, err := Parse([]byte(base), "ringgate.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Delivery
	if d.Timeout != 10*time.Second || !reflect.DeepEqual(d.RetrySchedule, []time.Duration{30 * time.Second, 5 * time.Minute, 30 * time.Minute}) ||
		d.BreakerThreshold != 10 || d.LogRetention != 720*time.Hour || d.AllowHTTP || d.AllowPrivateNetworks {
		t.Fatalf("delivery defaults: %+v", d)
	}
	if cfg.Workspaces[0].Tracker.SessionHold != 30*time.Minute || cfg.Log.Level != "info" {
		t.Fatalf("nested defaults: %+v %+v", cfg.Workspaces[0].Tracker, cfg.Log)
	}
	if ep, ws := cfg.Endpoint("ghl"); ep == nil || ws.ID != 1 || !ep.Subscribed("call.missed") || ep.Subscribed("call.started") {
		t.Fatal("endpoint lookup")
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	if _, err := Load("../../config.example.yaml"); err != nil {
		t.Fatal(err)
	}
}

func TestBrokenConfigs(t *testing.T) {
	cases := []struct {
		name, from, to string
		want           string
	}{
		{"unknown key", "storage: {backend: badger, path: ./data}", "storage: {backend: badger, path: ./data, size: 3}",
			"x.yaml:5:42: storage: unknown key \"size\" (known keys: backend, jetstream, path)"},
		{"jetstream without servers", "storage: {backend: badger, path: ./data}", "storage: {backend: jetstream, path: ./data}",
			"x.yaml:5:10: storage.jetstream: set either urls (connect to NATS servers) or embedded: true (run one inside ringgate)"},
		{"jetstream replicas without a cluster", "storage: {backend: badger, path: ./data}", "storage: {backend: jetstream, jetstream: {embedded: true, replicas: 3}}",
			"x.yaml:5:69: storage.jetstream.replicas: 3 replicas need a cluster (cluster_listen and routes)"},
		{"jetstream bad route", "storage: {backend: badger, path: ./data}", "storage: {backend: jetstream, jetstream: {embedded: true, cluster_listen: \"0.0.0.0:6222\", routes: [\"node2:6222\"]}}",
			"x.yaml:5:100: storage.jetstream.routes[0]: \"node2:6222\" is not a route like nats://node2:6222"},
		{"bad duration", "workspaces:", "delivery: {timeout: 10}\nworkspaces:",
			"x.yaml:7:21: delivery.timeout: \"10\" needs a unit, like \"10s\""},
		{"not a duration", "workspaces:", "delivery: {retry_schedule: [30s, soon]}\nworkspaces:",
			"x.yaml:7:34: delivery.retry_schedule[1]: \"soon\" is not a duration (examples: 500ms, 30s, 5m, 720h)"},
		{"missing env", "token: \"0123456789abcdef\"", "token: \"${RINGGATE_TEST_UNSET_TOKEN}\"",
			"x.yaml:4:42: server.admin.token: environment variable RINGGATE_TEST_UNSET_TOKEN is not set"},
		{"short token", "token: \"0123456789abcdef\"", "token: short",
			"x.yaml:4:42: server.admin.token: must be at least 16 characters"},
		{"http endpoint", "url: https://services", "url: http://services",
			"x.yaml:19:14: workspaces[0].endpoints[0].url: \"http://services.leadconnectorhq.com/hooks/x\" must use https (set delivery.allow_http: true for local testing)"},
		{"metadata endpoint", "url: https://services.leadconnectorhq.com/hooks/x", "url: https://169.254.169.254/latest",
			"x.yaml:19:14: workspaces[0].endpoints[0].url: 169.254.169.254 is a link-local address (set delivery.allow_private_networks: true for local testing)"},
		{"loopback v6 endpoint", "url: https://services.leadconnectorhq.com/hooks/x", "url: https://[::1]:8443/x",
			"x.yaml:19:14: workspaces[0].endpoints[0].url: ::1 is a loopback address (set delivery.allow_private_networks: true for local testing)"},
		{"unknown event", "[call.completed, call.missed]", "[call.completed, call.ended]",
			"x.yaml:20:34: workspaces[0].endpoints[0].events[1]: \"call.ended\" is not an event (events: call.started, call.completed, call.missed, recording.available, transcription.available, lead.qualified, call.blocked, voicemail.received, voicemail.transcribed)"},
		{"bad number", "forward_to: \"+15550001111\"", "forward_to: \"555-0001\"",
			"x.yaml:13:21: workspaces[0].campaigns[0].forward_to: \"555-0001\" is not an E.164 number like +15551234567"},
		{"bad secret", "events: [call.completed, call.missed]", "events: [call.completed]\n        secret: hunter2",
			"x.yaml:21:17: workspaces[0].endpoints[0].secret: must start with whsec_ followed by base64"},
		{"reserved header", "events: [call.completed, call.missed]", "events: [call.completed]\n        headers: {Signature: x}",
			"x.yaml:21:30: workspaces[0].endpoints[0].headers.Signature: \"Signature\" is set by ringgate and cannot be overridden"},
		{"wrong type", "storage: {backend: badger, path: ./data}", "storage: [badger]",
			"x.yaml:5:10: storage: expected a mapping, got a list"},
		{"not a bool", "workspaces:", "delivery: {allow_http: sometimes}\nworkspaces:",
			"x.yaml:7:24: delivery.allow_http: \"sometimes\" is not true or false"},
		{"duplicate key", "storage: {backend: badger, path: ./data}", "storage: {backend: badger, backend: badger}",
			"x.yaml:5:28: storage: duplicate key \"backend\""},
		{"missing public url", "  public_url: https://calls.example.com\n", "",
			"x.yaml:2:3: server.public_url: is required: the URL Twilio calls, e.g. https://calls.example.com"},
		{"syntax", "storage: {backend: badger, path: ./data}", "storage: {backend: badger, path: ./data",
			"x.yaml:5:1: syntax: did not find expected ',' or '}' (in the block or collection starting here)"},
		{"bad trusted proxy", "  public_url: https://calls.example.com\n", "  public_url: https://calls.example.com\n  trusted_proxies: [10.0.0.0/8, proxy.internal]\n",
			"x.yaml:4:33: server.trusted_proxies[1]: \"proxy.internal\" is not an address or a CIDR range like 10.0.0.0/8"},
		{"negative session limit", "    name: My Workspace\n", "    name: My Workspace\n    tracker: {new_sessions_per_minute: -1}\n",
			"x.yaml:10:40: workspaces[0].tracker.new_sessions_per_minute: must be 0 (no limit) or more"},
		{"unknown campaign", "events: [call.completed, call.missed]", "events: [call.completed, call.missed]\n        campaigns: [42, 7]",
			"x.yaml:21:25: workspaces[0].endpoints[0].campaigns[1]: 7 is not a campaign of this workspace"},
		{"duplicate endpoint", "    endpoints:\n", "    endpoints:\n      - {id: ghl, name: a, url: \"https://a.example.com\", events: [call.started]}\n",
			"x.yaml:18:13: workspaces[0].endpoints[1].id: endpoint \"ghl\" is defined twice"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(base, c.from) {
				t.Fatalf("case does not apply: %q", c.from)
			}
			src := strings.Replace(base, c.from, c.to, 1)
			_, err := Parse([]byte(src), "x.yaml", noEnv)
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("got %v, want Errors", err)
			}
			if es.Error() != c.want {
				t.Fatalf("got:\n%s\nwant:\n%s\nin:\n%s", es.Error(), c.want, src)
			}
		})
	}
}

// Every problem in a file is reported, in file order.
func TestAllErrorsAtOnce(t *testing.T) {
	src := strings.NewReplacer(
		"backend: badger", "backend: postgres",
		`forward_to: "+15550001111"`, `forward_to: "0"`,
		"[call.completed, call.missed]", "[nope]",
	).Replace(base) + "extra: 1\n"
	_, err := Parse([]byte(src), "x.yaml", noEnv)
	var es Errors
	if !errors.As(err, &es) || len(es) != 4 {
		t.Fatalf("got %v", err)
	}
	for i := 1; i < len(es); i++ {
		if es[i].Line < es[i-1].Line {
			t.Fatalf("not in file order: %v", es)
		}
	}
}

func TestEnvExpansion(t *testing.T) {
	env := map[string]string{"TOKEN": "from-env-0123456789", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for in, want := range map[string]string{
		"${TOKEN}":           "from-env-0123456789",
		"a${TOKEN}b":         "afrom-env-0123456789b",
		"${UNSET:-fallback}": "fallback",
		"${EMPTY:-fallback}": "fallback",
		"$$notvar":           "$notvar",
		"price $5":           "price $5",
	} {
		got, err := expandEnv(in, lookup)
		if err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"${UNSET}", "${", "${1X}"} {
		if _, err := expandEnv(bad, lookup); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestAliasBombIsRefused(t *testing.T) {
	// 200 workspaces x 200 campaigns x 200 numbers = 8 million values from a 600-item file.
	rep := func(alias string) string {
		return "[" + strings.TrimSuffix(strings.Repeat(alias+", ", 200), ", ") + "]"
	}
	src := "x-num: &n {id: 1, number: \"+15550001111\", name: n}\n" +
		"x-nums: &ns " + rep("*n") + "\n" +
		"x-camp: &c {id: 1, name: c, forward_to: \"+15550001111\", numbers: *ns}\n" +
		"x-camps: &cs " + rep("*c") + "\n" +
		"x-ws: &w {id: 1, name: w, campaigns: *cs}\n" +
		"workspaces: " + rep("*w") + "\n"
	start := time.Now()
	_, err := Parse([]byte(src), "bomb.yaml", noEnv)
	if err == nil || !strings.Contains(err.Error(), "expands to more than") || time.Since(start) > 5*time.Second {
		t.Fatalf("alias bomb: %.300v after %s", err, time.Since(start))
	}
}

// FuzzParse: no input makes the loader panic, and every failure is a list of positioned errors.
func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte("server: {listen: [1, 2]}"))
	f.Add([]byte("workspaces: [{id: x, endpoints: [{url: '${X'}]}]"))
	f.Add([]byte("a: &x {b: *x}"))
	f.Add([]byte("---\n- 1\n- 2\n"))
	f.Add([]byte("delivery: {retry_schedule: 5m, timeout: -1s}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "fuzz.yaml", noEnv)
		if err == nil {
			if cfg == nil {
				t.Fatal("nil config without error")
			}
			return
		}
		var es Errors
		if !errors.As(err, &es) || len(es) == 0 {
			t.Fatalf("error is not Errors: %v", err)
		}
		for _, e := range es {
			if e.File != "fuzz.yaml" || e.Msg == "" {
				t.Fatalf("bad error %+v", e)
			}
		}
	})
}

// docs/config.md is generated from the struct tags; UPDATE_DOCS=1 rewrites it.
func TestReferenceDocIsCurrent(t *testing.T) {
	const file = "../../docs/config.md"
	want := "# Configuration reference\n\nGenerated from the struct tags in `gateway/config/config.go` " +
		"(`UPDATE_DOCS=1 go test ./gateway/config/` rewrites it). Durations take units (`500ms`, `30s`, " +
		"`720h`); sizes take `KiB`, `MiB`, `GiB`; any value may use `${ENV}` or `${ENV:-default}`.\n\n" + Reference()
	if os.Getenv("UPDATE_DOCS") != "" {
		os.MkdirAll("../../docs", 0o755)
		os.WriteFile(file, []byte(want), 0o644)
	}
	got, err := os.ReadFile(file)
	if err != nil || string(got) != want {
		t.Fatalf("%s is out of date: run UPDATE_DOCS=1 go test ./gateway/config/", file)
	}
}

func TestValidHeaderName(t *testing.T) {
	for name, want := range map[string]bool{
		"X-Ringgate-Mapper": true, "x_custom.v2": true, "!#$%&'*+-.^_`|~": true, "A1": true,
		"": false, "X Mapper": false, "X:Mapper": false, "X-Ünï": false, "X\r\nInjected": false, "(x)": false, "x@y": false,
	} {
		if got := ValidHeaderName(name); got != want {
			t.Errorf("ValidHeaderName(%q) = %v, want %v", name, got, want)
		}
	}
}

// Reserved headers are found in any case, without allocating for the names transforms set.
func TestReservedHeader(t *testing.T) {
	for name, want := range map[string]bool{
		"Signature": true, "CONTENT-LENGTH": true, "host": true, "Webhook-Id": true, "WEBHOOK-anything": true,
		"X-Ringgate-Mapper": false, "Hosts": false, "webhook": false, "": false,
		"webhoo\u212a-id":        true, // the Kelvin sign lower-cases to k, as strings.ToLower has it
		strings.Repeat("x", 100): false, "webhook-" + strings.Repeat("x", 100): true,
	} {
		if got := ReservedHeader(name); got != want {
			t.Errorf("ReservedHeader(%q) = %v, want %v", name, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { ReservedHeader("X-Ringgate-Mapper") }); n != 0 {
		t.Errorf("ReservedHeader allocates %v times", n)
	}
}

// Transform config keys are what config_get reads, 1 to 256 bytes.
func TestTransformConfigKeys(t *testing.T) {
	src := strings.Replace(base, "events: [call.completed, call.missed]",
		"events: [call.completed]\n        transform: {module: config_test.go, config: {\"\": x, "+strings.Repeat("k", 257)+": y, tag: PPC}}", 1)
	_, err := Parse([]byte(src), "x.yaml", noEnv)
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 || !strings.Contains(es.Error(), `transform.config: key "": keys are 1 to 256 bytes`) {
		t.Fatalf("got %v", err)
	}
}

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the ringgate binary built once for these tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ringgate-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "ringgate")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	e2eToken  = "e2e-admin-token-0123456789"
	e2eSecret = "whsec_ZGVtby1zZWNyZXQtZm9yLWxvY2FsLXRlc3Rpbmc="
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// node is one ringgate serve process.
type node struct {
	t       *testing.T
	cmd     *exec.Cmd
	cfgFile string
	public  string
	admin   string
	log     *bytes.Buffer
	logMu   *sync.Mutex
}

func writeConfig(t *testing.T, dir, public, admin, endpointURL, extra string) string {
	t.Helper()
	cfg := fmt.Sprintf(`server:
  listen: %s
  public_url: http://%s
  admin: {listen: %s, token: %s}
storage: {path: %s}
twilio: {auth_token: e2e-twilio-token}
delivery: {allow_http: true, allow_private_networks: true, timeout: 5s%s}
log: {level: debug}
workspaces:
  - id: 1
    name: E2E Workspace
    block_list: [{number: "+15551234567", reason: spam}]
    campaigns:
      - id: 42
        name: Google Ads Campaign
        forward_to: "+15550001111"
        record: true
        voicemail: {enabled: true, transcribe: true}
        numbers: [{id: 1, number: "+18005551234", name: Main}]
    endpoints:
      - id: sink
        name: Sink
        url: %s
        secret: %s
        events: [call.started, call.completed, call.missed, recording.available, transcription.available, lead.qualified, call.blocked, voicemail.received, voicemail.transcribed]
`, public, public, admin, e2eToken, filepath.Join(dir, "data"), extra, endpointURL, e2eSecret)
	f := filepath.Join(dir, "ringgate.yaml")
	if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

type syncBuffer struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (s syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func startNode(t *testing.T, cfgFile, public, admin string) *node {
	t.Helper()
	n := spawnNode(t, cfgFile, public, admin)
	n.waitReady()
	return n
}

// spawnNode starts a ringgate serve process without waiting for it.
func spawnNode(t *testing.T, cfgFile, public, admin string) *node {
	t.Helper()
	n := &node{t: t, cfgFile: cfgFile, public: public, admin: admin, log: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	n.cmd = exec.Command(binary, "serve", "--config", cfgFile)
	n.cmd.Stderr = syncBuffer{n.logMu, n.log}
	n.cmd.Stdout = n.cmd.Stderr
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n.cmd.ProcessState == nil {
			n.cmd.Process.Kill()
			n.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", n.logs())
		}
	})
	return n
}

func (n *node) waitReady() {
	t := n.t
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + n.public + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not ready:\n%s", n.logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (n *node) logs() string { n.logMu.Lock(); defer n.logMu.Unlock(); return n.log.String() }

func (n *node) api(method, path, body string) (int, map[string]any) {
	n.t.Helper()
	req, _ := http.NewRequest(method, "http://"+n.admin+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e2eToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// slowSink is an independent receiver: it verifies nothing, records each webhook-id it sees and
// answers after a delay.
type slowSink struct {
	srv   *http.Server
	URL   string
	mu    sync.Mutex
	seen  map[string]int
	delay time.Duration
}

func newSlowSink(t *testing.T, delay time.Duration) *slowSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &slowSink{URL: "http://" + ln.Addr().String() + "/hook", seen: map[string]int{}, delay: delay}
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		s.mu.Lock()
		delay := s.delay
		s.mu.Unlock()
		time.Sleep(delay)
		s.mu.Lock()
		s.seen[r.Header.Get("webhook-id")]++
		s.mu.Unlock()
		w.WriteHeader(200)
	})}
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

func (s *slowSink) has(id string) bool { s.mu.Lock(); defer s.mu.Unlock(); return s.seen[id] > 0 }

// missing counts the ids the sink has not seen.
func (s *slowSink) missing(ids []string) int {
	n := 0
	for _, id := range ids {
		if !s.has(id) {
			n++
		}
	}
	return n
}

// catchUp stops delaying and waits until the sink has seen every id; the failure names what
// should have delivered them.
func (s *slowSink) catchUp(t *testing.T, ids []string, within time.Duration, from string) {
	t.Helper()
	s.mu.Lock()
	s.delay = 0
	s.mu.Unlock()
	deadline := time.Now().Add(within)
	for m := s.missing(ids); m > 0; m = s.missing(ids) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged deliveries never arrived %s", m, len(ids), from)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill -9 in the middle of a burst with a slow receiver, then restart: every event the gateway
// acknowledged arrives at least once, and a redelivery carries the same webhook-id.
func TestKill9MidBurstLosesNothing(t *testing.T) {
	dir := t.TempDir()
	sink := newSlowSink(t, 30*time.Millisecond)
	public, admin := freePort(t), freePort(t)
	cfg := writeConfig(t, dir, public, admin, sink.URL, ", max_in_flight: 4")
	n := startNode(t, cfg, public, admin)
	ids := burstThenKill(t, n)
	missing := sink.missing(ids)
	t.Logf("killed with %d acknowledged, %d not yet delivered", len(ids), missing)
	if missing == 0 {
		t.Fatal("the receiver was not behind at the kill; the test proves nothing")
	}

	startNode(t, cfg, public, admin)
	sink.catchUp(t, ids, 60*time.Second, "after restart")
	// Redeliveries (attempts cut off by the kill) reuse their webhook-id: every id the receiver saw
	// is one the gateway handed out.
	known := map[string]bool{}
	for _, id := range ids {
		known[id] = true
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	dups := 0
	for id, c := range sink.seen {
		if c > 1 {
			dups++
		}
		if !known[id] && !strings.HasPrefix(id, "msg_") {
			t.Errorf("unexpected webhook-id %q", id)
		}
	}
	t.Logf("all %d delivered; %d delivered more than once under the same webhook-id", len(ids), dups)
}

func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	good := writeConfig(t, dir, "127.0.0.1:1", "127.0.0.1:2", "http://127.0.0.1:3/", "")
	out, err := exec.Command(binary, "check", "--config", good).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("valid config: %v %s", err, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	src, _ := os.ReadFile(good)
	broken := strings.Replace(string(src), "timeout: 5s", "timeout: 5, nonsense: 1", 1)
	broken = strings.Replace(broken, "events: [call.started", "events: [call.begun", 1)
	os.WriteFile(bad, []byte(broken), 0o644)
	cmd := exec.Command(binary, "check", "--config", bad)
	out, _ = cmd.CombinedOutput() // exits 1: checked below
	if cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("exit %d: %s", cmd.ProcessState.ExitCode(), out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 problems, got:\n%s", out)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, bad+":") {
			t.Errorf("%q is not FILE:LINE:COL: message", l)
		}
	}
}

// ringgate check compiles the transforms too, and points at the module of each broken one.
func TestCheckCompilesTransforms(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	root, _ := filepath.Abs("../..")
	dir := t.TempDir()
	badImport := filepath.Join(dir, "badimport.wasm")
	if out, err := exec.Command("wat2wasm", filepath.Join(root, "plugins/testdata/badimport.wat"), "-o", badImport).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v %s", err, out)
	}
	cfg := filepath.Join(dir, "ringgate.yaml")
	write := func(modules ...string) {
		y := `server: {public_url: "https://calls.example.com", admin: {token: "0123456789abcdef"}}
twilio: {auth_token: x}
workspaces:
  - id: 1
    name: W
    endpoints:
`
		for i, m := range modules {
			y += fmt.Sprintf("      - {id: e%d, url: \"https://crm.example.com/h\", events: [call.completed], transform: {module: %q}}\n", i, m)
		}
		os.WriteFile(cfg, []byte(y), 0o644)
	}
	write(filepath.Join(root, "plugins/examples/gohighlevel/gohighlevel.wasm"), filepath.Join(root, "plugins/examples/wat/event-header.wasm"))
	if out, err := exec.Command(binary, "check", "--config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("good transforms: %v %s", err, out)
	}
	write(filepath.Join(root, "plugins/examples/gohighlevel/gohighlevel.wasm"), filepath.Join(root, "plugins/testdata/notwasm.wasm"), badImport)
	cmd := exec.Command(binary, "check", "--config", cfg)
	out, _ := cmd.CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if cmd.ProcessState.ExitCode() != 1 || len(lines) != 2 ||
		!strings.HasPrefix(lines[0], cfg+":8:") || !strings.Contains(lines[0], "endpoints[1].transform.module: ") ||
		!strings.HasPrefix(lines[1], cfg+":9:") || !strings.Contains(lines[1], "endpoints[2].transform.module: ") || !strings.Contains(lines[1], "import") {
		t.Fatalf("exit %d:\n%s", cmd.ProcessState.ExitCode(), out)
	}
}

func TestAdminAPIAndReload(t *testing.T) {
	dir := t.TempDir()
	sink := newSlowSink(t, 0)
	public, admin := freePort(t), freePort(t)
	cfgFile := writeConfig(t, dir, public, admin, sink.URL, "")
	narrow, _ := os.ReadFile(cfgFile)
	os.WriteFile(cfgFile, []byte(strings.Replace(string(narrow), "events: [call.started, call.completed, call.missed, recording.available, transcription.available, lead.qualified, call.blocked, voicemail.received, voicemail.transcribed]", "events: [call.started, call.completed, call.missed]", 1)), 0o644)
	n := startNode(t, cfgFile, public, admin)

	// No token, wrong token.
	for _, tok := range []string{"", "Bearer wrong"} {
		req, _ := http.NewRequest("GET", "http://"+admin+"/api/v1/endpoints", nil)
		if tok != "" {
			req.Header.Set("Authorization", tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error struct{ Code string } }
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 401 || e.Error.Code != "unauthorized" {
			t.Fatalf("token %q: %d %+v", tok, resp.StatusCode, e)
		}
	}
	code, body := n.api("GET", "/api/v1/endpoints", "")
	eps, _ := body["endpoints"].([]any)
	if code != 200 || len(eps) != 1 || eps[0].(map[string]any)["enabled"] != true {
		t.Fatalf("endpoints: %d %v", code, body)
	}
	if code, body = n.api("POST", "/api/v1/endpoints/sink/test", `{"event":"recording.available"}`); code != 400 {
		t.Fatalf("unsubscribed test: %d %v", code, body)
	}
	if code, _ = n.api("POST", "/api/v1/endpoints/nope/test", `{"event":"call.started"}`); code != 404 {
		t.Fatalf("unknown endpoint: %d", code)
	}
	code, body = n.api("POST", "/api/v1/endpoints/sink/test", `{"event":"call.missed"}`)
	if code != 202 {
		t.Fatalf("test: %d %v", code, body)
	}
	id := body["delivery_id"].(string)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body = n.api("GET", "/api/v1/deliveries/"+id, "")
		if body["status"] == "success" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	attempts, _ := body["attempt_log"].([]any)
	if body["status"] != "success" || len(attempts) != 1 || body["payload"].(map[string]any)["event"] != "call.missed" {
		t.Fatalf("delivery: %v", body)
	}
	code, body = n.api("GET", "/api/v1/deliveries?endpoint=sink&status=success&limit=5", "")
	if ds, _ := body["deliveries"].([]any); code != 200 || len(ds) != 1 {
		t.Fatalf("list: %d %v", code, body)
	}
	if code, _ = n.api("GET", "/api/v1/deliveries?status=bogus", ""); code != 400 {
		t.Fatalf("bad filter: %d", code)
	}
	if code, body = n.api("POST", "/api/v1/deliveries/"+id+"/retry", ""); code != 409 {
		t.Fatalf("retry of a success: %d %v", code, body)
	}
	if code, body = n.api("POST", "/api/v1/endpoints/sink/retry-failed", `{"limit": 5}`); code != 202 || body["queued"] != 0.0 {
		t.Fatalf("retry-failed with nothing failed: %d %v", code, body)
	}
	if code, _ = n.api("POST", "/api/v1/endpoints/nope/retry-failed", ""); code != 404 {
		t.Fatalf("retry-failed of an unknown endpoint: %d", code)
	}
	if code, _ = n.api("POST", "/api/v1/endpoints/sink/retry-failed", `{"limit": -1}`); code != 400 {
		t.Fatalf("retry-failed with a bad limit: %d", code)
	}
	code, body = n.api("POST", "/api/v1/endpoints/sink/rotate-secret", "")
	if s, _ := body["secret"].(string); code != 200 || !strings.HasPrefix(s, "whsec_") {
		t.Fatalf("rotate: %d %v", code, body)
	}

	// A broken file is refused by the API and by SIGHUP; the running config stays.
	good, _ := os.ReadFile(cfgFile)
	os.WriteFile(cfgFile, []byte(strings.Replace(string(good), "name: Sink", "name: Sink\n        colour: blue", 1)), 0o644)
	code, body = n.api("POST", "/api/v1/reload", "")
	msg, _ := body["error"].(map[string]any)["message"].(string)
	if code != 400 || !strings.Contains(msg, `unknown key "colour"`) || !strings.Contains(msg, cfgFile+":") {
		t.Fatalf("bad reload: %d %v", code, body)
	}
	n.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(200 * time.Millisecond)
	if code, _ = n.api("POST", "/api/v1/endpoints/sink/test", `{"event":"call.started"}`); code != 202 {
		t.Fatalf("gateway broken after a refused reload: %d", code)
	}
	// A good change applies.
	os.WriteFile(cfgFile, []byte(strings.Replace(string(good), "name: Sink", "name: Renamed Sink", 1)), 0o644)
	if code, body = n.api("POST", "/api/v1/reload", ""); code != 200 {
		t.Fatalf("reload: %d %v", code, body)
	}
	if _, body = n.api("GET", "/api/v1/endpoints/sink", ""); body["name"] != "Renamed Sink" {
		t.Fatalf("after reload: %v", body)
	}
	// Graceful stop.
	n.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- n.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

// The sink verifies both signatures of a real delivery and prints it as one JSON line.
func TestSinkVerifiesDeliveries(t *testing.T) {
	sinkAddr := freePort(t)
	cmd := exec.Command(binary, "sink", "--listen", sinkAddr, "--secret", e2eSecret)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	dir := t.TempDir()
	public, admin := freePort(t), freePort(t)
	n := startNode(t, writeConfig(t, dir, public, admin, "http://"+sinkAddr+"/hook", ""), public, admin)
	for i := 0; i < 50; i++ {
		if c, err := net.Dial("tcp", sinkAddr); err == nil {
			c.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _ := n.api("POST", "/api/v1/endpoints/sink/test", `{"event":"call.completed"}`); code != 202 {
		t.Fatal("test not accepted")
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		if sc.Scan() {
			lines <- sc.Text()
		}
	}()
	select {
	case l := <-lines:
		var got sinkLine
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			t.Fatal(err)
		}
		if !got.SignatureOK || !got.WebhookSignatureOK || got.Event != "call.completed" || got.Status != 200 {
			t.Fatalf("sink line: %s", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sink printed nothing")
	}
}

// runSink runs the ringgate sink binary until the test ends and collects what it prints.
func runSink(t *testing.T) (string, syncBuffer) {
	t.Helper()
	addr := freePort(t)
	cmd := exec.Command(binary, "sink", "--listen", addr, "--secret", e2eSecret)
	out := syncBuffer{&sync.Mutex{}, &bytes.Buffer{}}
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addr, out
}

// ringgate simulate plays each outcome against the real binary; ringgate sink receives the
// deliveries with both signatures verified.
func TestSimulateEveryOutcome(t *testing.T) {
	sinkAddr, sinkOut := runSink(t)
	dir := t.TempDir()
	public, admin := freePort(t), freePort(t)
	cfg := writeConfig(t, dir, public, admin, "http://"+sinkAddr+"/hook", "")
	startNode(t, cfg, public, admin)

	want := map[string][]string{
		"answered":  {"call.started", "call.completed", "recording.available"},
		"no-answer": {"call.started", "call.missed"},
		"busy":      {"call.started", "call.missed"},
		"failed":    {"call.started", "call.missed"},
		"voicemail": {"call.started", "call.missed", "voicemail.received", "voicemail.transcribed"},
		"blocked":   {"call.blocked"},
	}
	sids := map[string]string{}
	for outcome := range want {
		from := "+14155550123"
		if outcome == "blocked" {
			from = "+15551234567"
		}
		out, err := exec.Command(binary, "simulate", "--config", cfg, "--to", "+18005551234", "--from", from, "--outcome", outcome, "--quiet").Output()
		if err != nil {
			t.Fatalf("simulate %s: %v", outcome, err)
		}
		sids[outcome] = strings.TrimSpace(string(out))
		if !strings.HasPrefix(sids[outcome], "CA") {
			t.Fatalf("simulate %s printed %q", outcome, out)
		}
	}
	total := 0
	for _, evs := range want {
		total += len(evs)
	}
	var got map[string][]string
	deadline := time.Now().Add(15 * time.Second)
	for {
		got = map[string][]string{}
		n := 0
		sinkOut.mu.Lock()
		text := sinkOut.buf.String()
		sinkOut.mu.Unlock()
		for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
			var raw map[string]any
			if json.Unmarshal([]byte(l), &raw) != nil {
				continue
			}
			if raw["signature_ok"] != true || raw["webhook_signature_ok"] != true {
				t.Fatalf("signature not verified by the sink: %s", l)
			}
			body, _ := raw["body"].(map[string]any)
			data, _ := body["data"].(map[string]any)
			sid, _ := data["twilio_call_sid"].(string)
			if raw["event"] == "call.blocked" {
				sid = sids["blocked"]
			}
			for outcome, s := range sids {
				if s == sid {
					got[outcome] = append(got[outcome], raw["event"].(string))
					n++
				}
			}
		}
		if n >= total || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for outcome, evs := range want {
		g := append([]string(nil), got[outcome]...)
		sort.Strings(g)
		w := append([]string(nil), evs...)
		sort.Strings(w)
		if strings.Join(g, ",") != strings.Join(w, ",") {
			t.Errorf("%s: sink got %v, want %v", outcome, got[outcome], evs)
		}
	}
}

// Each example transform end to end: send-tests through the real binary to ringgate sink, the
// signatures covering the transformed body; a hostile module fails its own deliveries only.
func TestTransformsEndToEnd(t *testing.T) {
	root, _ := filepath.Abs("../..")
	ex := func(p string) string { return filepath.Join(root, "plugins/examples", p) }
	for _, f := range []string{ex("gohighlevel/gohighlevel.wasm"), ex("wat/event-header.wasm"), ex("assemblyscript/build/event-filter.wasm")} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v: run make plugins first (make test does)", err)
		}
	}
	dir := t.TempDir()
	loop := filepath.Join(dir, "loop.wasm")
	if out, err := exec.Command("wat2wasm", filepath.Join(root, "plugins/testdata/loop.wat"), "-o", loop).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v %s", err, out)
	}
	sinkAddr, sinkOut := runSink(t)
	public, admin := freePort(t), freePort(t)
	url := "http://" + sinkAddr + "/hook"
	cfg := fmt.Sprintf(`server: {listen: %s, public_url: "http://%s", admin: {listen: %s, token: %s}}
storage: {path: %s}
twilio: {auth_token: e2etoken}
delivery: {allow_http: true, allow_private_networks: true, retry_schedule: []}
workspaces:
  - id: 1
    name: E2E
    endpoints:
      - {id: ghl, name: GHL, url: %q, secret: %q, events: [call.completed], transform: {module: %q, config: {tag: PPC}, timeout: 2s}}
      - {id: wat, name: WAT, url: %q, secret: %q, events: [call.completed, call.started], transform: {module: %q, config: {drop: call.started}}}
      - {id: as, name: AS, url: %q, secret: %q, events: [call.completed, call.missed], transform: {module: %q, config: {only: call.completed}}}
      - {id: loop, name: Loop, url: %q, secret: %q, events: [call.completed], transform: {module: %q}}
`, public, public, admin, e2eToken, filepath.Join(dir, "data"),
		url, e2eSecret, ex("gohighlevel/gohighlevel.wasm"), url, e2eSecret, ex("wat/event-header.wasm"),
		url, e2eSecret, ex("assemblyscript/build/event-filter.wasm"), url, e2eSecret, loop)
	cfgFile := filepath.Join(dir, "ringgate.yaml")
	os.WriteFile(cfgFile, []byte(cfg), 0o644)
	n := startNode(t, cfgFile, public, admin)

	ids := map[string]string{}
	for _, c := range []struct{ ep, event string }{{"ghl", "call.completed"}, {"wat", "call.completed"}, {"wat", "call.started"}, {"as", "call.completed"}, {"as", "call.missed"}, {"loop", "call.completed"}} {
		code, body := n.api("POST", "/api/v1/endpoints/"+c.ep+"/test", `{"event":"`+c.event+`"}`)
		if code != 202 {
			t.Fatalf("test %s %s: %d %v", c.ep, c.event, code, body)
		}
		ids[c.ep+" "+c.event] = body["delivery_id"].(string)
	}
	status := func(id string) (string, map[string]any) {
		_, d := n.api("GET", "/api/v1/deliveries/"+id, "")
		s, _ := d["status"].(string)
		return s, d
	}
	want := map[string]string{"ghl call.completed": "success", "wat call.completed": "success", "wat call.started": "filtered",
		"as call.completed": "success", "as call.missed": "filtered", "loop call.completed": "failed"}
	deadline := time.Now().Add(20 * time.Second)
	for k, id := range ids {
		for {
			s, d := status(id)
			if s == want[k] {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: status %q, want %q: %v", k, s, want[k], d)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	_, d := status(ids["loop call.completed"])
	if a := d["attempt_log"].([]any)[0].(map[string]any); a["error"] != "transform timed out after 100ms" {
		t.Errorf("loop: %v", a)
	}
	_, d = status(ids["wat call.started"])
	if a := d["attempt_log"].([]any)[0].(map[string]any); !strings.Contains(fmt.Sprint(a["logs"]), "filtered by config") {
		t.Errorf("the guest log is not kept with the attempt: %v", a)
	}
	// What the sink saw: verified signatures over the transformed bodies, and the guests' headers.
	sinkOut.mu.Lock()
	lines := strings.Split(strings.TrimSpace(sinkOut.buf.String()), "\n")
	sinkOut.mu.Unlock()
	byID := map[string]sinkLine{}
	for _, l := range lines {
		var sl sinkLine
		if json.Unmarshal([]byte(l), &sl) == nil {
			byID[sl.WebhookID] = sl
		}
	}
	if len(byID) != 3 {
		t.Fatalf("sink got %d deliveries, want 3: %v", len(byID), lines)
	}
	for _, l := range byID {
		if !l.SignatureOK || !l.WebhookSignatureOK {
			t.Errorf("signatures do not cover the transformed body: %+v", l)
		}
	}
	ghl := byID[ids["ghl call.completed"]]
	if !strings.Contains(string(ghl.Body), `"phone":"+14155551234"`) || !strings.Contains(string(ghl.Body), `"PPC"`) || ghl.Headers["X-Ringgate-Mapper"] != "gohighlevel/1" {
		t.Errorf("gohighlevel: %s %v", ghl.Body, ghl.Headers)
	}
	wat := byID[ids["wat call.completed"]]
	if wat.Headers["X-Ringgate-Event"] != "call.completed" || !strings.Contains(string(wat.Body), `"event":"call.completed"`) {
		t.Errorf("wat: %v %.80s", wat.Headers, wat.Body)
	}
	if as := byID[ids["as call.completed"]]; as.Headers["X-Ringgate-Event"] != "call.completed" {
		t.Errorf("assemblyscript: %v", as.Headers)
	}
}

// ringgate simulate --session calls the number a visitor session holds; the delivery carries the
// session's attribution.
func TestSimulateSession(t *testing.T) {
	recv := newSlowSink(t, 0)
	var bodies []string
	var bmu sync.Mutex
	recv.srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bmu.Lock()
		bodies = append(bodies, string(b))
		bmu.Unlock()
	})
	dir := t.TempDir()
	public, admin := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`server: {listen: %s, public_url: "http://%s", admin: {listen: %s, token: %s}}
storage: {path: %s}
twilio: {auth_token: e2etoken}
delivery: {allow_http: true, allow_private_networks: true}
workspaces:
  - id: 3
    name: Tracked
    tracker: {allowed_origins: ["https://shop.example"]}
    campaigns:
      - {id: 1, name: Web, forward_to: "+15550001111", numbers: [{id: 1, number: "+18005550100", pool: true}, {id: 2, number: "+18005550101", pool: true}]}
    endpoints:
      - {id: crm, name: CRM, url: %q, events: [call.completed]}
`, public, public, admin, e2eToken, filepath.Join(dir, "data"), recv.URL)
	cfgFile := filepath.Join(dir, "ringgate.yaml")
	os.WriteFile(cfgFile, []byte(cfg), 0o644)
	startNode(t, cfgFile, public, admin)
	req, _ := http.NewRequest("POST", "http://"+public+"/v1/sessions?w=3", strings.NewReader(`{"attribution": {"utm_source": "newsletter", "fbclid": "IwAR-test"}}`))
	req.Header.Set("Origin", "https://shop.example")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var sess struct {
		SessionID string `json:"session_id"`
		Number    string `json:"number"`
	}
	json.NewDecoder(resp.Body).Decode(&sess)
	resp.Body.Close()
	if sess.SessionID == "" || sess.Number == "" {
		t.Fatalf("session: %+v", sess)
	}
	out, err := exec.Command(binary, "simulate", "--config", cfgFile, "--session", sess.SessionID, "--outcome", "answered", "--quiet").CombinedOutput()
	if err != nil {
		t.Fatalf("simulate --session: %v %s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		bmu.Lock()
		n := len(bodies)
		var body string
		if n > 0 {
			body = bodies[0]
		}
		bmu.Unlock()
		if n > 0 {
			if !strings.Contains(body, `"tracking_number":"`+sess.Number+`"`) || !strings.Contains(body, `"fbclid":"IwAR-test"`) || !strings.Contains(body, `"utm_source":"newsletter"`) {
				t.Fatalf("delivery without the session's attribution: %s", body)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no delivery")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// burstThenKill sends test events to n from 8 clients and kills n with SIGKILL once 300 are
// acknowledged; it returns the acknowledged delivery ids.
func burstThenKill(t *testing.T, n *node) []string {
	t.Helper()
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				select {
				case <-stop:
					return
				default:
				}
				code, body := n.api("POST", "/api/v1/endpoints/sink/test", `{"event":"call.completed"}`)
				if code != 202 {
					return // the process is gone
				}
				mu.Lock()
				acked = append(acked, body["delivery_id"].(string))
				mu.Unlock()
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		k := len(acked)
		mu.Unlock()
		if k >= 300 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	n.cmd.Wait()
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return append([]string(nil), acked...)
}

// Three ringgate processes, each with its embedded JetStream node, form one cluster. kill -9
// one of them (its NATS node goes with it) in the middle of a burst that it acknowledged, with a
// slow receiver: the two others deliver every acknowledged event, without a restart.
func TestClusterKill9MidBurstLosesNothing(t *testing.T) {
	sink := newSlowSink(t, 30*time.Millisecond)
	var routes []string
	for range 3 {
		routes = append(routes, freePort(t))
	}
	var nodes []*node
	for i := range 3 {
		dir := t.TempDir()
		public, admin := freePort(t), freePort(t)
		cfg := writeConfig(t, dir, public, admin, sink.URL, ", max_in_flight: 4")
		var others []string
		for j, r := range routes {
			if j != i {
				others = append(others, "nats://"+r)
			}
		}
		b, _ := os.ReadFile(cfg)
		storage := fmt.Sprintf("storage: {path: %s, backend: jetstream, jetstream: {embedded: true, name: node%d, cluster_listen: %q, routes: [%s], replicas: 3, lease: 3s}}",
			filepath.Join(dir, "data"), i+1, routes[i], strings.Join(others, ", "))
		b = []byte(strings.Replace(string(b), "storage: {path: "+filepath.Join(dir, "data")+"}", storage, 1))
		if err := os.WriteFile(cfg, b, 0o644); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, spawnNode(t, cfg, public, admin))
	}
	for _, n := range nodes {
		n.waitReady() // the three start together: each waits for the cluster's quorum
	}
	victim := nodes[0]
	ids := burstThenKill(t, victim)
	m := sink.missing(ids)
	t.Logf("node 1 killed with %d acknowledged, %d not yet delivered", len(ids), m)
	if m == 0 {
		t.Fatal("the receiver was not behind at the kill; the test proves nothing")
	}
	sink.catchUp(t, ids, 90*time.Second, "from the surviving nodes")
	sink.mu.Lock()
	repeats := 0
	for _, n := range sink.seen {
		repeats += n - 1
	}
	sink.mu.Unlock()
	t.Logf("all %d delivered by the two surviving nodes; %d repeated under the same webhook-id", len(ids), repeats)
}

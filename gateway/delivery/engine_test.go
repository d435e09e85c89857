package delivery

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringgate/ringgate/gateway/clock"
	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/events"
	"github.com/ringgate/ringgate/gateway/pace"
	"github.com/ringgate/ringgate/gateway/store"
	badgerstore "github.com/ringgate/ringgate/gateway/store/badger"
	jsstore "github.com/ringgate/ringgate/gateway/store/jetstream"
	"github.com/valyala/fasthttp"
)

// received is one request a test receiver got.
type received struct {
	headers map[string]string
	body    []byte
	at      time.Time
}

// receiver is a real fasthttp server on 127.0.0.1 whose answer a test controls.
type receiver struct {
	URL    string
	mu     sync.Mutex
	got    []received
	status int
	handle func(ctx *fasthttp.RequestCtx) bool // true: handled
	ln     net.Listener
	clk    clock.Clock
}

func newReceiver(t *testing.T, clk clock.Clock) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{URL: "http://" + ln.Addr().String() + "/hook", status: 200, ln: ln, clk: clk}
	srv := &fasthttp.Server{Handler: r.serve, ReadTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	return r
}

func (r *receiver) serve(ctx *fasthttp.RequestCtx) {
	h := map[string]string{}
	for k, v := range ctx.Request.Header.All() {
		h[strings.ToLower(string(k))] = string(v)
	}
	r.mu.Lock()
	r.got = append(r.got, received{headers: h, body: append([]byte(nil), ctx.PostBody()...), at: r.clk.Now()})
	status, handle := r.status, r.handle
	r.mu.Unlock()
	if handle != nil && handle(ctx) {
		return
	}
	ctx.SetStatusCode(status)
}

func (r *receiver) set(status int) { r.mu.Lock(); r.status = status; r.mu.Unlock() }
func (r *receiver) count() int     { r.mu.Lock(); defer r.mu.Unlock(); return len(r.got) }
func (r *receiver) all() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

type harness struct {
	t    *testing.T
	e    *Engine
	st   store.Store
	clk  clock.Clock
	cfg  *config.Config
	fake *clock.Fake
}

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func testConfig(t *testing.T, endpoints string, extra string) *config.Config {
	t.Helper()
	y := fmt.Sprintf(`
server: {public_url: "http://127.0.0.1:8080", admin: {token: "0123456789abcdef"}}
twilio: {auth_token: "test-token"}
delivery: {allow_http: true, allow_private_networks: true, timeout: 2s%s}
workspaces:
  - id: 1
    name: My Workspace
    endpoints:
%s`, extra, endpoints)
	cfg, err := config.Parse([]byte(y), "test.yaml", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("config: %v\n%s", err, y)
	}
	return cfg
}

func endpointYAML(id, url string, events ...string) string {
	if len(events) == 0 {
		events = []string{"call.completed"}
	}
	return fmt.Sprintf("      - {id: %s, name: %s, url: %q, secret: %q, events: [%s]}\n", id, id, url, testSecret, strings.Join(events, ", "))
}

func newHarness(t *testing.T, cfg *config.Config, clk clock.Clock) *harness {
	t.Helper()
	st, err := badgerstore.Open(t.TempDir(), badgerstore.Options{Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	return newHarnessOn(t, cfg, clk, st)
}

// newHarnessOn runs an engine on st, which it closes at the end of the test; log, when given,
// is the engine's logger.
func newHarnessOn(t *testing.T, cfg *config.Config, clk clock.Clock, st store.Store, log ...*slog.Logger) *harness {
	t.Helper()
	h := &harness{t: t, st: st, clk: clk, cfg: cfg}
	h.fake, _ = clk.(*clock.Fake)
	opt := Options{Store: st, Clock: clk, Logger: quietLog(), Version: "test", Jitter: func() float64 { return 0.5 }}
	if len(log) > 0 {
		opt.Logger = log[0]
	}
	h.e = New(opt)
	if err := h.e.Provision(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if err := h.e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h.e.Stop(ctx)
		st.Close()
	})
	return h
}

func quietLog() *slog.Logger {
	if os.Getenv("RINGGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(discard{}, nil))
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func (h *harness) publish(typ string) Published {
	h.t.Helper()
	ev, _ := events.Sample(typ, events.Workspace{ID: 1, Name: "My Workspace"}, h.clk.Now())
	p, err := h.e.Publish(context.Background(), ev)
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

// eventually polls cond in real time (the engine's goroutines run on their own schedule).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (h *harness) delivery(id string) (store.Delivery, []store.Attempt) {
	d, as, err := h.st.Delivery(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return d, as
}

// --- independent verifiers: written from the specs, not from the signer under test ---

func verifyPHP(secret string, body []byte, sig string) bool {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal([]byte(hex.EncodeToString(mac.Sum(nil))), []byte(sig))
}

func verifyStandard(secret, id, ts string, body []byte, header string) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, s := range strings.Fields(header) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return true
		}
	}
	return false
}

// The example of the Standard Webhooks specification's reference libraries.
func TestStandardWebhooksVector(t *testing.T) {
	s, err := NewSigner("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "")
	if err != nil {
		t.Fatal(err)
	}
	got := s.WebhookSignature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("got %s want %s", got, want)
	}
	if !verifyStandard("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", []byte(`{"test": 2432232314}`), got) {
		t.Fatal("independent verifier disagrees")
	}
}

func TestDeliveryHeadersVerify(t *testing.T) {
	r := newReceiver(t, clock.Real{})
	ep := strings.Replace(endpointYAML("crm", r.URL, "call.completed", "call.blocked"), "}\n", ", headers: {X-Source: ringgate}}\n", 1)
	cfg := testConfig(t, ep, "")
	h := newHarness(t, cfg, clock.Real{})
	p := h.publish(events.CallCompleted)
	h.publish(events.CallBlocked)
	h.publish(events.CallStarted) // not subscribed
	eventually(t, "two deliveries", func() bool { return r.count() == 2 })
	time.Sleep(50 * time.Millisecond)
	if r.count() != 2 {
		t.Fatalf("got %d deliveries, want 2", r.count())
	}
	for _, g := range r.all() {
		hd := g.headers
		if !verifyPHP(testSecret, g.body, hd["signature"]) {
			t.Errorf("Signature header %q does not verify", hd["signature"])
		}
		if !verifyStandard(testSecret, hd["webhook-id"], hd["webhook-timestamp"], g.body, hd["webhook-signature"]) {
			t.Errorf("webhook-signature %q does not verify", hd["webhook-signature"])
		}
		if hd["content-type"] != "application/json" || hd["user-agent"] != "ringgate/test" || hd["x-source"] != "ringgate" {
			t.Errorf("headers: %v", hd)
		}
		if ts, _ := strconv.ParseInt(hd["webhook-timestamp"], 10, 64); time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
			t.Errorf("timestamp %d is not now", ts)
		}
	}
	if id := r.all()[0].headers["webhook-id"]; id != p.DeliveryIDs[0] && r.all()[1].headers["webhook-id"] != p.DeliveryIDs[0] {
		t.Errorf("webhook-id is not the delivery id %s", p.DeliveryIDs[0])
	}
	d, as := h.delivery(p.DeliveryIDs[0])
	if d.Status != store.Success || len(as) != 1 || as[0].StatusCode != 200 {
		t.Fatalf("delivery %+v attempts %+v", d, as)
	}
}

func TestRetryScheduleThenFailed(t *testing.T) {
	fake := clock.NewFake(time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC))
	r := newReceiver(t, fake)
	r.set(500)
	h := newHarness(t, testConfig(t, endpointYAML("crm", r.URL), ""), fake)
	start := fake.Now()
	p := h.publish(events.CallCompleted)
	id := p.DeliveryIDs[0]
	// The jitter source returns 0.5, the middle: delays are exactly the schedule.
	waits := []time.Duration{30 * time.Second, 5 * time.Minute, 30 * time.Minute}
	want := []time.Time{start}
	for i, w := range waits {
		h.waitRetrying(id, i+1)
		if r.count() != i+1 {
			t.Fatalf("attempt %d early: %d requests", i+1, r.count())
		}
		fake.Advance(w - time.Second)
		time.Sleep(20 * time.Millisecond)
		if r.count() != i+1 {
			t.Fatalf("retry %d came before its time", i+1)
		}
		fake.Advance(time.Second)
		want = append(want, want[len(want)-1].Add(w))
	}
	eventually(t, "4 attempts", func() bool { return r.count() == 4 })
	eventually(t, "failed", func() bool { d, _ := h.delivery(id); return d.Status == store.Failed })
	d, as := h.delivery(id)
	if d.Attempts != 4 || len(as) != 4 {
		t.Fatalf("attempts %d, records %d", d.Attempts, len(as))
	}
	for i, g := range r.all() {
		if !g.at.Equal(want[i]) {
			t.Errorf("attempt %d at %s, want %s", i+1, g.at.Sub(start), want[i].Sub(start))
		}
		if g.headers["webhook-id"] != id {
			t.Errorf("attempt %d webhook-id %s, want %s", i+1, g.headers["webhook-id"], id)
		}
	}
	if as[3].StatusCode != 500 || as[3].Error != "HTTP 500" {
		t.Errorf("last attempt %+v", as[3])
	}
	st, _ := h.st.Endpoint(context.Background(), "crm")
	if st.ConsecutiveFailures != 1 || !st.Enabled {
		t.Errorf("breaker state %+v", st)
	}
	// A manual retry is one attempt; it succeeds now.
	r.set(204)
	if _, err := h.e.Retry(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	eventually(t, "manual retry", func() bool { d, _ := h.delivery(id); return d.Status == store.Success })
	if _, err := h.e.Retry(context.Background(), id); err == nil {
		t.Error("retrying a successful delivery was accepted")
	}
}

func (h *harness) waitRetrying(id string, attempts int) {
	h.t.Helper()
	eventually(h.t, fmt.Sprintf("attempt %d recorded", attempts), func() bool {
		d, _ := h.delivery(id)
		return d.Attempts == attempts && d.Status == store.Retrying && h.fake.Waiters() > 0
	})
}

func TestBreakerDisablesHoldsAndReleases(t *testing.T) {
	fake := clock.NewFake(time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC))
	r := newReceiver(t, fake)
	r.set(503)
	h := newHarness(t, testConfig(t, endpointYAML("crm", r.URL), ", retry_schedule: [1s]"), fake)
	for i := 1; i <= 10; i++ {
		id := h.publish(events.CallCompleted).DeliveryIDs[0]
		h.waitRetrying(id, 1)
		fake.Advance(time.Second)
		eventually(t, "failed", func() bool { d, _ := h.delivery(id); return d.Status == store.Failed })
		st, _ := h.st.Endpoint(context.Background(), "crm")
		if st.ConsecutiveFailures != i || st.Enabled != (i < 10) {
			t.Fatalf("after %d failed deliveries: %+v", i, st)
		}
	}
	// The engine's view follows the store once the outcome's commit is synced.
	eventually(t, "the engine to see the endpoint disabled", func() bool {
		v, _ := h.e.Endpoint("crm")
		return !v.State.Enabled && !v.State.DisabledAt.IsZero()
	})
	before := r.count()
	held := h.publish(events.CallCompleted).DeliveryIDs[0]
	time.Sleep(50 * time.Millisecond)
	if d, _ := h.delivery(held); d.Status != store.Held || r.count() != before {
		t.Fatalf("new delivery while disabled: %s, %d requests", d.Status, r.count()-before)
	}
	r.set(200)
	n, err := h.e.Enable(context.Background(), "crm")
	if err != nil || n != 1 {
		t.Fatalf("enable released %d, %v", n, err)
	}
	eventually(t, "held delivery sent", func() bool { d, _ := h.delivery(held); return d.Status == store.Success })
	st, _ := h.st.Endpoint(context.Background(), "crm")
	if !st.Enabled || st.ConsecutiveFailures != 0 {
		t.Fatalf("after enable: %+v", st)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	fake := clock.NewFake(time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC))
	r := newReceiver(t, fake)
	r.handle = func(ctx *fasthttp.RequestCtx) bool {
		ctx.Response.Header.Set("Retry-After", "120")
		ctx.SetStatusCode(429)
		return true
	}
	h := newHarness(t, testConfig(t, endpointYAML("crm", r.URL), ""), fake)
	id := h.publish(events.CallCompleted).DeliveryIDs[0]
	h.waitRetrying(id, 1)
	d, _ := h.delivery(id)
	if got := d.NextAt.Sub(fake.Now()); got != 120*time.Second {
		t.Fatalf("next attempt in %s, want 2m (Retry-After beats the 30s schedule)", got)
	}
}

func TestRotateSecretSignsWithBoth(t *testing.T) {
	fake := clock.NewFake(time.Now())
	r := newReceiver(t, fake)
	h := newHarness(t, testConfig(t, endpointYAML("crm", r.URL), ""), fake)
	newSecret, err := h.e.RotateSecret(context.Background(), "crm")
	if err != nil || !strings.HasPrefix(newSecret, "whsec_") || newSecret == testSecret {
		t.Fatalf("rotate: %q %v", newSecret, err)
	}
	h.publish(events.CallCompleted)
	eventually(t, "delivery", func() bool { return r.count() == 1 })
	g := r.all()[0]
	for _, s := range []string{testSecret, newSecret} {
		if !verifyStandard(s, g.headers["webhook-id"], g.headers["webhook-timestamp"], g.body, g.headers["webhook-signature"]) {
			t.Errorf("signature does not verify with %s during the grace period", s)
		}
	}
	if !verifyPHP(newSecret, g.body, g.headers["signature"]) {
		t.Error("Signature header not made with the new secret")
	}
	fake.Advance(RotationGrace + time.Second)
	h.publish(events.CallCompleted)
	eventually(t, "second delivery", func() bool { return r.count() == 2 })
	g = r.all()[1]
	if verifyStandard(testSecret, g.headers["webhook-id"], g.headers["webhook-timestamp"], g.body, g.headers["webhook-signature"]) {
		t.Error("old secret still verifies after the grace period")
	}
	// A restart keeps the rotated secret: the config's secret has not changed.
	if err := h.e.Provision(context.Background(), h.cfg); err != nil {
		t.Fatal(err)
	}
	if v, _ := h.e.Endpoint("crm"); v.State.Secret != newSecret {
		t.Error("re-provisioning replaced the rotated secret")
	}
}

func TestSendTestOnlySubscribed(t *testing.T) {
	r := newReceiver(t, clock.Real{})
	h := newHarness(t, testConfig(t, endpointYAML("crm", r.URL, "call.missed"), ""), clock.Real{})
	if _, err := h.e.SendTest(context.Background(), "crm", "call.completed"); err == nil {
		t.Fatal("test of an unsubscribed event accepted")
	}
	if _, err := h.e.SendTest(context.Background(), "nope", "call.missed"); err != ErrUnknownEndpoint {
		t.Fatalf("unknown endpoint: %v", err)
	}
	id, err := h.e.SendTest(context.Background(), "crm", "call.missed")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "test delivery", func() bool { return r.count() == 1 })
	if !strings.Contains(string(r.all()[0].body), `"event":"call.missed"`) {
		t.Fatalf("body %s", r.all()[0].body)
	}
	if d, _ := h.delivery(id); !d.Test {
		t.Error("not marked as a test")
	}
}

// Receivers that hang, reset, send huge bodies or redirect hold only their own lanes.
func TestBadReceiversDoNotStallOthers(t *testing.T) {
	good := newReceiver(t, clock.Real{})
	hang := newReceiver(t, clock.Real{})
	hang.handle = func(ctx *fasthttp.RequestCtx) bool { time.Sleep(3 * time.Second); return false }
	huge := newReceiver(t, clock.Real{})
	huge.handle = func(ctx *fasthttp.RequestCtx) bool {
		ctx.SetBodyStream(strings.NewReader(strings.Repeat("x", 32<<20)), 32<<20)
		return true
	}
	redirect := newReceiver(t, clock.Real{})
	redirect.handle = func(ctx *fasthttp.RequestCtx) bool {
		ctx.Redirect("http://169.254.169.254/latest/meta-data", 302)
		return true
	}
	reset, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer reset.Close()
	go func() {
		for {
			c, err := reset.Accept()
			if err != nil {
				return
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	eps := endpointYAML("good", good.URL) + endpointYAML("hang", hang.URL) + endpointYAML("huge", huge.URL) +
		endpointYAML("redirect", redirect.URL) + endpointYAML("reset", "http://"+reset.Addr().String()+"/")
	h := newHarness(t, testConfig(t, eps, ", max_in_flight: 4"), clock.Real{})
	start := time.Now()
	const n = 40
	for i := 0; i < n; i++ {
		h.publish(events.CallCompleted)
	}
	eventually(t, "every delivery to the good endpoint", func() bool { return good.count() == n })
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("good endpoint took %s behind bad ones", took)
	}
	// Each bad endpoint's first attempts ended in a clear failure.
	// Each bad endpoint's first attempts ended in a clear failure (a 200 with a huge body is a
	// success with its response cut at 4 KiB).
	want := map[string]string{"redirect": "redirect to", "reset": "connection", "hang": "timed out after 2s", "huge": ""}
	for ep, msg := range want {
		status := store.Retrying
		if ep == "huge" {
			status = store.Success
		}
		eventually(t, ep+" attempt recorded", func() bool {
			ds, _ := h.st.Deliveries(context.Background(), store.DeliveryFilter{EndpointID: ep, Status: status, Limit: 1})
			return len(ds) == 1
		})
		ds, _ := h.st.Deliveries(context.Background(), store.DeliveryFilter{EndpointID: ep, Status: status, Limit: 1})
		_, as := h.delivery(ds[0].ID)
		if len(as) == 0 || !strings.Contains(as[0].Error, msg) {
			t.Errorf("%s: attempts %+v, want error containing %q", ep, as, msg)
		}
	}
}

func TestHugeResponseIsCappedAndSucceeds(t *testing.T) {
	huge := newReceiver(t, clock.Real{})
	huge.handle = func(ctx *fasthttp.RequestCtx) bool {
		ctx.SetBodyStream(strings.NewReader(strings.Repeat("y", 64<<20)), 64<<20)
		return true
	}
	h := newHarness(t, testConfig(t, endpointYAML("huge", huge.URL), ""), clock.Real{})
	start := time.Now()
	id := h.publish(events.CallCompleted).DeliveryIDs[0]
	eventually(t, "success", func() bool { d, _ := h.delivery(id); return d.Status == store.Success })
	_, as := h.delivery(id)
	if len(as[0].Response) != ResponseCap || time.Since(start) > 2*time.Second {
		t.Fatalf("kept %d bytes of the response after %s", len(as[0].Response), time.Since(start))
	}
}

type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, fmt.Errorf("no such host %s", host)
}

func TestDialerRefusesPrivateAddresses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	res := fakeResolver{
		"loopback.example": {netip.MustParseAddr("127.0.0.1")},
		"metadata.example": {netip.MustParseAddr("169.254.169.254")},
		"private.example":  {netip.MustParseAddr("10.0.0.1")},
		"v6.example":       {netip.MustParseAddr("::1")},
		"mapped.example":   {netip.MustParseAddr("::ffff:127.0.0.1")},
		"cgnat.example":    {netip.MustParseAddr("100.64.1.1")},
	}
	d := &Dialer{Resolver: res}
	for _, host := range []string{"127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "loopback.example", "metadata.example", "private.example", "v6.example", "mapped.example", "cgnat.example"} {
		c, err := d.Dial(net.JoinHostPort(host, port), time.Second)
		if err == nil {
			c.Close()
			t.Errorf("%s: dialled", host)
			continue
		}
		if !strings.Contains(err.Error(), "forbidden address") {
			t.Errorf("%s: %v", host, err)
		}
	}
	// The opt-out dials the address it resolved.
	open := &Dialer{Resolver: res, AllowPrivate: true}
	c, err := open.Dial(net.JoinHostPort("loopback.example", port), time.Second)
	if err != nil {
		t.Fatalf("allow_private_networks: %v", err)
	}
	c.Close()
}

// With the default config, an endpoint whose name resolves to loopback is never contacted.
func TestDeliveryToPrivateNameIsRefused(t *testing.T) {
	r := newReceiver(t, clock.Real{})
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(strings.TrimSuffix(r.URL, "/hook"), "http://"))
	cfg := testConfig(t, endpointYAML("crm", "http://internal.example:"+port+"/hook"), "")
	cfg.Delivery.AllowPrivateNetworks = false
	st, err := badgerstore.Open(t.TempDir(), badgerstore.Options{Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e := New(Options{Store: st, Logger: quietLog(), Resolver: fakeResolver{"internal.example": {netip.MustParseAddr("127.0.0.1")}}})
	if err := e.Provision(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	e.Start()
	defer e.Stop(context.Background())
	ev, _ := events.Sample("call.completed", events.Workspace{ID: 1}, time.Now())
	p, _ := e.Publish(context.Background(), ev)
	eventually(t, "refused attempt", func() bool {
		d, _, _ := st.Delivery(context.Background(), p.DeliveryIDs[0])
		return d.Attempts == 1
	})
	_, as, _ := st.Delivery(context.Background(), p.DeliveryIDs[0])
	if r.count() != 0 || !strings.Contains(as[0].Error, "loopback") {
		t.Fatalf("receiver got %d requests; attempt %+v", r.count(), as[0])
	}
}

// Publishers that run while the lane reads: a publisher takes its due time before its commit,
// so a read can pass that time first. Every delivery still goes out at once, not at the next
// periodic full scan (30 s away).
func TestConcurrentPublishersAreNotLeftBehind(t *testing.T) {
	r := newReceiver(t, clock.Real{})
	h := newHarness(t, testConfig(t, endpointYAML("crm", r.URL), ""), clock.Real{})
	const publishers, each = 32, 100
	var wg sync.WaitGroup
	for range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				h.publish("call.completed")
			}
		}()
	}
	wg.Wait()
	eventually(t, fmt.Sprintf("all %d deliveries (got %d)", publishers*each, r.count()), func() bool { return r.count() >= publishers*each })
}

// A reload that changes max_in_flight resizes the lanes already running, both ways.
func TestReloadResizesRunningLanes(t *testing.T) {
	slow := newReceiver(t, clock.Real{})
	var mu sync.Mutex
	inFlight, peak := 0, 0
	gate := make(chan struct{})
	slow.handle = func(ctx *fasthttp.RequestCtx) bool {
		mu.Lock()
		inFlight++
		peak = max(peak, inFlight)
		mu.Unlock()
		<-gate
		mu.Lock()
		inFlight--
		mu.Unlock()
		return false
	}
	now := func() (int, int) { mu.Lock(); defer mu.Unlock(); return inFlight, peak }
	eps := endpointYAML("slow", slow.URL)
	h := newHarness(t, testConfig(t, eps, ", max_in_flight: 2"), clock.Real{})
	var open sync.Once
	t.Cleanup(func() { open.Do(func() { close(gate) }) }) // before the engine stops: a failed test lets the handlers go
	for i := 0; i < 40; i++ {
		h.publish(events.CallCompleted)
	}
	resize := func(limit int) {
		if err := h.e.Provision(context.Background(), testConfig(t, eps, fmt.Sprintf(", max_in_flight: %d", limit))); err != nil {
			t.Fatal(err)
		}
	}
	settled := func(limit int) {
		eventually(t, fmt.Sprintf("%d attempts in flight", limit), func() bool { n, _ := now(); return n == limit })
		time.Sleep(100 * time.Millisecond)
		if n, p := now(); n != limit || p != limit {
			t.Fatalf("with max_in_flight %d: %d in flight, peak %d", limit, n, p)
		}
	}
	settled(2)
	resize(6)
	settled(6)
	resize(1)
	for i := 0; i < 5; i++ { // the six running finish; then one at a time
		gate <- struct{}{}
	}
	mu.Lock()
	peak = 0
	mu.Unlock()
	for i := 0; i < 10; i++ {
		gate <- struct{}{}
		time.Sleep(5 * time.Millisecond)
	}
	if _, p := now(); p > 1 {
		t.Fatalf("with max_in_flight 1: peak %d", p)
	}
	open.Do(func() { close(gate) })
	eventually(t, "every delivery", func() bool { return slow.count() >= 40 })
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"120":                           2 * time.Minute,
		" 5 ":                           5 * time.Second,
		"0":                             0,
		"-3":                            0,
		"soon":                          0,
		"Thu, 15 Jan 2026 12:01:00 GMT": time.Minute,
		"Thu, 15 Jan 2026 11:59:00 GMT": 0,
		"20000000000":                   (1 << 31) * time.Second, // would overflow a Duration
		"9223372036854775807":           (1 << 31) * time.Second,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("Retry-After %q: %s, want %s", v, got, want)
		}
	}
}

// An endpoint with campaigns takes only those campaigns' events; one without takes all.
func TestEndpointsTakeTheirCampaigns(t *testing.T) {
	y := `
server: {public_url: "http://127.0.0.1:8080", admin: {token: "0123456789abcdef"}}
twilio: {auth_token: "test-token"}
delivery: {allow_http: true, allow_private_networks: true}
workspaces:
  - id: 1
    name: My Workspace
    campaigns:
      - {id: 42, name: Google, forward_to: "+15550001111", numbers: [{id: 1, number: "+18005551234"}]}
      - {id: 43, name: Facebook, forward_to: "+15550001111", numbers: [{id: 2, number: "+18005551235"}]}
    endpoints:
      - {id: google, url: "http://127.0.0.1:1/a", events: [call.completed, call.blocked], campaigns: [42]}
      - {id: facebook, url: "http://127.0.0.1:1/b", events: [call.completed, call.blocked], campaigns: [43]}
      - {id: all, url: "http://127.0.0.1:1/c", events: [call.completed, call.blocked]}
`
	cfg, err := config.Parse([]byte(y), "test.yaml", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, cfg, clock.Real{})
	for _, c := range []struct {
		typ      string
		campaign int64
		want     string
	}{
		{events.CallCompleted, 42, "google all"},
		{events.CallCompleted, 43, "facebook all"},
		{events.CallBlocked, 43, "facebook all"},
	} {
		ev, _ := events.Sample(c.typ, events.Workspace{ID: 1, Name: "My Workspace"}, time.Now())
		switch d := ev.Data.(type) {
		case events.CallData:
			d.CampaignID = c.campaign
			ev.Data = d
		case events.BlockedData:
			d.Campaign.ID = c.campaign
			ev.Data = d
		}
		out, _, err := h.e.Prepare(ev)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range out.Deliveries {
			got = append(got, d.EndpointID)
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%s of campaign %d went to %v, want %s", c.typ, c.campaign, got, c.want)
		}
	}
}

// rate_limit spaces an endpoint's attempts: a second's worth at once, then one per 1/rate, on the
// engine's clock.
func TestRateLimitSpacesAttempts(t *testing.T) {
	fake := clock.NewFake(time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC))
	r := newReceiver(t, fake)
	cfg := testConfig(t, fmt.Sprintf("      - {id: crm, name: crm, url: %q, secret: %q, events: [call.completed], rate_limit: 2}\n", r.URL, testSecret), "")
	h := newHarness(t, cfg, fake)
	for range 6 {
		h.publish(events.CallCompleted)
	}
	eventually(t, "the first second's two attempts", func() bool { return r.count() == 2 })
	settle := func(want int) {
		t.Helper()
		eventually(t, "the lane to wait for the next token", func() bool { return fake.Waiters() > 0 })
		time.Sleep(50 * time.Millisecond) // real time: nothing more may go out
		if n := r.count(); n != want {
			t.Fatalf("%d attempts, want %d", n, want)
		}
	}
	settle(2)
	for i, want := range []int{3, 4, 5, 6} {
		fake.Advance(500 * time.Millisecond)
		eventually(t, fmt.Sprintf("attempt %d half a second later", i+3), func() bool { return r.count() == want })
		if want < 6 {
			settle(want)
		}
	}
}

// In a cluster, rate_limit is one budget for all the nodes (store.Pacer). Node 1 spends the
// first second's two attempts and stops; node 2, on the same JetStream, then waits for the next
// share rather than spending a budget of its own, and takes one share per interval after it.
func TestRateLimitIsOneBudgetForACluster(t *testing.T) {
	fake := clock.NewFake(time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC))
	r := newReceiver(t, fake)
	cfg := testConfig(t, fmt.Sprintf("      - {id: crm, name: crm, url: %q, secret: %q, events: [call.completed], rate_limit: 2}\n", r.URL, testSecret), "")
	srv, err := jsstore.StartServer(jsstore.ServerOptions{Name: "n1", Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	node := func() *harness {
		st, err := jsstore.Open(context.Background(), jsstore.Options{URLs: []string{srv.ClientURL()}, Logger: quietLog()})
		if err != nil {
			t.Fatal(err)
		}
		return newHarnessOn(t, cfg, fake, st)
	}
	quiet := func(want int) {
		t.Helper()
		time.Sleep(300 * time.Millisecond) // real time: nothing more may go out
		if n := r.count(); n != want {
			t.Fatalf("%d attempts, want %d", n, want)
		}
	}
	h1 := node()
	for range 2 {
		h1.publish(events.CallCompleted)
	}
	eventually(t, "node 1's two attempts", func() bool { return r.count() == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h1.e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	h2 := node()
	for range 3 {
		h2.publish(events.CallCompleted)
	}
	quiet(2)
	for _, want := range []int{3, 4, 5} {
		fake.Advance(500 * time.Millisecond)
		eventually(t, fmt.Sprintf("attempt %d half a second later", want), func() bool { return r.count() == want })
		quiet(want)
	}
}

// failingPacer is a Badger store that says it shares its rate limits (store.Pacer), whose shared
// budget fails while down is set.
type failingPacer struct {
	*badgerstore.Store
	down      atomic.Bool
	contended atomic.Int32 // how many more calls lose to other nodes
	asked     atomic.Int32
}

func (f *failingPacer) Pace(ctx context.Context, key string, r pace.Rate, now time.Time) (time.Duration, error) {
	f.asked.Add(1)
	if f.down.Load() {
		return 0, errors.New("nats: timeout")
	}
	if f.contended.Add(-1) >= 0 {
		return 0, fmt.Errorf("pace %s: %w", key, store.ErrContended)
	}
	return 0, nil
}

// syncBuffer is a log's buffer that goroutines share.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// publishRateLimited runs an engine on fp (its Badger store opened here) with one endpoint of
// rate_limit 2, and publishes a call.completed to it; it returns the endpoint's receiver and the
// engine's log.
func publishRateLimited(t *testing.T, fake *clock.Fake, fp *failingPacer) (*receiver, *syncBuffer) {
	t.Helper()
	r := newReceiver(t, fake)
	cfg := testConfig(t, fmt.Sprintf("      - {id: crm, name: crm, url: %q, secret: %q, events: [call.completed], rate_limit: 2}\n", r.URL, testSecret), "")
	st, err := badgerstore.Open(t.TempDir(), badgerstore.Options{Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	fp.Store = st
	logs := &syncBuffer{}
	h := newHarnessOn(t, cfg, fake, fp, slog.New(slog.NewTextHandler(logs, nil)))
	h.publish(events.CallCompleted)
	return r, logs
}

// A shared budget that does not answer sends nothing (a store that cannot answer could not record
// the attempt either) and is asked again a second later; the failure is logged once a minute.
func TestRateLimitWaitsForASharedBudgetThatFails(t *testing.T) {
	fake := clock.NewFake(time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC))
	fp := &failingPacer{}
	fp.down.Store(true)
	r, logs := publishRateLimited(t, fake, fp)
	eventually(t, "the lane to ask the budget", func() bool { return fp.asked.Load() > 0 })
	eventually(t, "the lane to wait", func() bool { return fake.Waiters() > 0 })
	for range 3 {
		time.Sleep(100 * time.Millisecond)
		fake.Advance(time.Second)
	}
	time.Sleep(100 * time.Millisecond)
	if n := r.count(); n != 0 {
		t.Fatalf("%d attempts without the budget", n)
	}
	if asked := fp.asked.Load(); asked < 2 {
		t.Fatalf("the budget was asked %d times in 3 s, want once a second", asked)
	}
	if n := strings.Count(logs.String(), "shared budget does not answer"); n != 1 {
		t.Fatalf("%d errors logged, want one a minute:\n%s", n, logs.String())
	}
	fp.down.Store(false)
	fake.Advance(time.Second)
	eventually(t, "the attempt once the budget answers", func() bool { return r.count() == 1 })
}

// A shared budget that other nodes kept taking shares of while the lane asked is asked again
// after a moment: contention is neither an empty budget nor an error.
func TestRateLimitAsksAgainWhenContended(t *testing.T) {
	fake := clock.NewFake(time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC))
	start := fake.Now()
	fp := &failingPacer{}
	fp.contended.Store(3)
	r, logs := publishRateLimited(t, fake, fp)
	eventually(t, "the attempt once the budget is not contended", func() bool {
		fake.Advance(paceContended)
		return r.count() == 1
	})
	if asked := fp.asked.Load(); asked != 4 {
		t.Fatalf("the budget was asked %d times, want 4 (3 contended)", asked)
	}
	if waited := fake.Now().Sub(start); waited >= storeErrorBackoff {
		t.Fatalf("the lane waited %s for a contended budget, as long as for a store that does not answer", waited)
	}
	if strings.Contains(logs.String(), "does not answer") {
		t.Fatalf("contention logged as an error:\n%s", logs.String())
	}
}

// After an outage outlasting the retries, RetryFailed sends the failed deliveries once more.
func TestRetryFailedAfterAnOutage(t *testing.T) {
	fake := clock.NewFake(time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC))
	r := newReceiver(t, fake)
	r.set(503)
	h := newHarness(t, testConfig(t, endpointYAML("crm", r.URL), ", retry_schedule: []"), fake)
	var ids []string
	for range 3 {
		ids = append(ids, h.publish(events.CallCompleted).DeliveryIDs[0])
	}
	failed := func(want store.Status, n int) func() bool {
		return func() bool {
			c := 0
			for _, id := range ids {
				if d, _ := h.delivery(id); d.Status == want {
					c++
				}
			}
			return c == n
		}
	}
	eventually(t, "3 failed", failed(store.Failed, 3))
	if _, err := h.e.RetryFailed(context.Background(), "nope", 10); !errors.Is(err, ErrUnknownEndpoint) {
		t.Fatalf("unknown endpoint: %v", err)
	}
	r.set(200)
	if n, err := h.e.RetryFailed(context.Background(), "crm", 2); n != 2 || err != nil {
		t.Fatalf("limit 2: %d %v", n, err)
	}
	eventually(t, "2 delivered", failed(store.Success, 2))
	if n, err := h.e.RetryFailed(context.Background(), "crm", 10); n != 1 || err != nil {
		t.Fatalf("the rest: %d %v", n, err)
	}
	eventually(t, "3 delivered", failed(store.Success, 3))
	if n, _ := h.e.RetryFailed(context.Background(), "crm", 10); n != 0 {
		t.Fatalf("nothing failed is left, %d queued", n)
	}
}

// An endpoint's own timeout overrides delivery.timeout, longer or shorter.
func TestEndpointTimeout(t *testing.T) {
	slow := newReceiver(t, clock.Real{})
	slow.handle = func(ctx *fasthttp.RequestCtx) bool { time.Sleep(300 * time.Millisecond); return false }
	y := fmt.Sprintf(`
server: {public_url: "http://127.0.0.1:8080", admin: {token: "0123456789abcdef"}}
twilio: {auth_token: "test-token"}
delivery: {allow_http: true, allow_private_networks: true, timeout: 100ms, retry_schedule: []}
workspaces:
  - id: 1
    name: My Workspace
    endpoints:
      - {id: default, url: %q, events: [call.completed]}
      - {id: patient, url: %q, events: [call.completed], timeout: 2s}
      - {id: hasty, url: %q, events: [call.completed], timeout: 50ms}
`, slow.URL, slow.URL, slow.URL)
	cfg, err := config.Parse([]byte(y), "test.yaml", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, cfg, clock.Real{})
	p := h.publish(events.CallCompleted)
	want := map[string]string{"default": "timed out after 100ms", "patient": "", "hasty": "timed out after 50ms"}
	for _, id := range p.DeliveryIDs {
		eventually(t, "the attempt", func() bool { d, _ := h.delivery(id); return d.Status.Final() })
		d, as := h.delivery(id)
		w := want[d.EndpointID]
		if len(as) != 1 || !strings.Contains(as[0].Error, w) || (w == "") != (d.Status == store.Success) {
			t.Errorf("%s: %s %+v, want %q", d.EndpointID, d.Status, as, w)
		}
	}
}

package sessions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ringgate/ringgate/gateway/clock"
	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/pace"
	"github.com/ringgate/ringgate/gateway/store"
	badgerstore "github.com/ringgate/ringgate/gateway/store/badger"
	"github.com/ringgate/ringgate/gateway/store/jetstream"
	"github.com/valyala/fasthttp"
)

func testConfig(t testing.TB, pool int) *config.Config {
	t.Helper()
	var nums []string
	for i := 0; i < pool; i++ {
		nums = append(nums, fmt.Sprintf(`{id: %d, number: "+1800555%04d", name: "Pool %d", pool: true}`, i+1, i, i))
	}
	y := fmt.Sprintf(`
server: {public_url: "https://calls.example.com", admin: {token: "0123456789abcdef"}}
twilio: {auth_token: x}
workspaces:
  - id: 1
    name: W
    tracker: {allowed_origins: ["https://example.com"], session_hold: 30m}
    campaigns:
      - {id: 7, name: Google, forward_to: "+15550001111", source: {utm_source: google, utm_medium: cpc}, swap_numbers: ["+15550001111"], numbers: [%s]}
      - {id: 8, name: Facebook, forward_to: "+15550001111", source: {fbclid: "*"}, numbers: [{id: 90, number: "+18009990000", pool: true}]}
      - {id: 9, name: Anyone, forward_to: "+15550001111", numbers: [{id: 91, number: "+18009990001", pool: true}, {id: 92, number: "+18009990002", pool: false}]}
  - id: 2
    name: Other
    campaigns:
      - {id: 10, name: Other, forward_to: "+15550001111", numbers: [{id: 1, number: "+18007770000", pool: true}]}
`, strings.Join(nums, ", "))
	cfg, err := config.Parse([]byte(y), "t.yaml", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func newService(t testing.TB, cfg *config.Config, clk clock.Clock) (*Service, *badgerstore.Store) {
	t.Helper()
	st, err := badgerstore.Open(t.TempDir(), badgerstore.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := New(Options{Store: st, Config: func() *config.Config { return cfg }, Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s.Provision(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	return s, st
}

var google = map[string]string{"utm_source": "google", "utm_medium": "cpc", "gclid": "abc"}

func TestPoolAssignment(t *testing.T) {
	fake := clock.NewFake(time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC))
	cfg := testConfig(t, 3)
	s, _ := newService(t, cfg, fake)
	ws := &cfg.Workspaces[0]
	ctx := context.Background()
	a, _ := s.Session(ctx, ws, "", google)
	b, _ := s.Session(ctx, ws, "", google)
	c, _ := s.Session(ctx, ws, "", google)
	if *a.Number == *b.Number || *b.Number == *c.Number || *a.Number == *c.Number {
		t.Fatalf("three visitors share numbers: %s %s %s", *a.Number, *b.Number, *c.Number)
	}
	if *a.NumberDisplay != Display(*a.Number) || !strings.HasPrefix(*a.NumberDisplay, "(800) 555-") || len(a.SwapNumbers) != 1 {
		t.Fatalf("display %s swap %v", *a.NumberDisplay, a.SwapNumbers)
	}
	// The same visitor keeps its number; its hold is extended.
	fake.Advance(20 * time.Minute)
	a2, _ := s.Session(ctx, ws, a.SessionID, google)
	if a2.SessionID != a.SessionID || *a2.Number != *a.Number || !a2.ExpiresAt.After(a.ExpiresAt) {
		t.Fatalf("refresh: %+v vs %+v", a2, a)
	}
	// b and c lapse (no heartbeat): the next visitor gets the least recently used free one (b's).
	fake.Advance(15 * time.Minute)
	d, _ := s.Session(ctx, ws, "", google)
	if *d.Number != *b.Number {
		t.Fatalf("LRU: got %s, want %s (b's, released first)", *d.Number, *b.Number)
	}
	// Matching: a call to b's number at the time b held it goes to b's session.
	at := fake.Now().Add(-30 * time.Minute)
	attr, err := s.Match(ctx, 1, *b.Number, at)
	if err != nil || attr == nil || attr.SessionID != b.SessionID || attr.Fields["gclid"] != "abc" {
		t.Fatalf("match b: %+v %v", attr, err)
	}
	if attr, _ := s.Match(ctx, 1, *b.Number, fake.Now()); attr == nil || attr.SessionID != d.SessionID {
		t.Fatalf("match d now: %+v", attr)
	}
	if attr, _ := s.Match(ctx, 2, *b.Number, fake.Now()); attr != nil {
		t.Fatal("matched across workspaces")
	}
	if attr, _ := s.Match(ctx, 1, "+15550001111", fake.Now()); attr != nil {
		t.Fatal("a static number matched a session")
	}
	// Restart: the pools come back from the store.
	s2 := New(Options{Store: s.opt.Store, Config: s.opt.Config, Clock: fake})
	if err := s2.Provision(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if attr, _ := s2.Match(ctx, 1, *d.Number, fake.Now()); attr == nil || attr.SessionID != d.SessionID {
		t.Fatalf("after restart: %+v", attr)
	}
}

// A restart rebuilds each pool number's recent holds and LRU order from far more stored sessions
// than it keeps (keepHolds per number), read in the store's order (by session id), not by time.
// A hold's end is not compared: one cut short when an exhausted pool handed its number on is
// stored with the end it was given.
// On a shared store (JetStream) they come from each number's holds record.
func TestRestartRebuildsPools(t *testing.T) {
	t.Run("badger", func(t *testing.T) {
		fake := clock.NewFake(time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC))
		cfg := testConfig(t, 3)
		s, _ := newService(t, cfg, fake)
		testRestart(t, s, cfg, fake)
	})
	t.Run("jetstream", func(t *testing.T) {
		srv, err := jetstream.StartServer(jetstream.ServerOptions{Name: "n1", StoreDir: t.TempDir(), Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		st, err := jetstream.Open(context.Background(), jetstream.Options{Server: srv, Logger: quiet})
		if err != nil {
			srv.Shutdown()
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		fake := clock.NewFake(time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC))
		cfg := testConfig(t, 3)
		s := New(Options{Store: st, Config: func() *config.Config { return cfg }, Clock: fake, Logger: quiet})
		if err := s.Provision(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		testRestart(t, s, cfg, fake)
	})
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func testRestart(t *testing.T, s *Service, cfg *config.Config, fake *clock.Fake) {
	ws := &cfg.Workspaces[0]
	ctx := context.Background()
	last := ""
	for i := 0; i < 300; i++ {
		id := ""
		if i%5 == 4 {
			id = last // a heartbeat of the newest visitor
		}
		r, err := s.Session(ctx, ws, id, google)
		if err != nil {
			t.Fatal(err)
		}
		last = r.SessionID
		fake.Advance(time.Duration(1+i%7) * time.Minute)
	}
	state := func(s *Service) string {
		var b strings.Builder
		for _, n := range s.pools[7].numbers {
			fmt.Fprintf(&b, "%s released %s\n", n.e164, n.released.Format(time.RFC3339))
			for _, h := range n.holds {
				fmt.Fprintf(&b, "  %s from %s\n", h.session, h.from.Format(time.RFC3339))
			}
		}
		return b.String()
	}
	before := state(s)
	if strings.Count(before, "\n  ") != 3*keepHolds {
		t.Fatalf("the test should fill every number's holds:\n%s", before)
	}
	s2 := New(Options{Store: s.opt.Store, Config: s.opt.Config, Clock: fake, Logger: s.opt.Logger})
	if err := s2.Provision(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if after := state(s2); after != before {
		t.Fatalf("after a restart:\n%s\nbefore:\n%s", after, before)
	}
	a, _ := s.Session(ctx, ws, "", google)
	b, _ := s2.Session(ctx, ws, "", google)
	if *a.Number != *b.Number {
		t.Fatalf("the next visitor gets %s after a restart, %s without", *b.Number, *a.Number)
	}
}

func TestPoolOfOneManyVisitors(t *testing.T) {
	fake := clock.NewFake(time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC))
	cfg := testConfig(t, 1)
	s, _ := newService(t, cfg, fake)
	ws := &cfg.Workspaces[0]
	var ids []string
	for i := 0; i < 5; i++ {
		r, err := s.Session(context.Background(), ws, "", google)
		if err != nil || *r.Number != "+18005550000" {
			t.Fatalf("visitor %d: %+v %v", i, r, err)
		}
		ids = append(ids, r.SessionID)
		fake.Advance(time.Minute)
	}
	st := s.Stats()
	if st.Pools[0].Reuses != 4 || st.Pools[0].Held != 1 || st.Created != 5 {
		t.Fatalf("stats %+v", st)
	}
	// The newest visitor holds it now; a call two minutes ago belongs to the visitor then.
	if attr, _ := s.Match(context.Background(), 1, "+18005550000", fake.Now()); attr.SessionID != ids[4] {
		t.Fatalf("now: %s", attr.SessionID)
	}
	if attr, _ := s.Match(context.Background(), 1, "+18005550000", fake.Now().Add(-150*time.Second)); attr.SessionID != ids[2] {
		t.Fatalf("earlier: %s want %s", attr.SessionID, ids[2])
	}
}

func TestCampaignChoice(t *testing.T) {
	cfg := testConfig(t, 2)
	ws := &cfg.Workspaces[0]
	for _, c := range []struct {
		visit map[string]string
		want  int64
	}{
		{map[string]string{"utm_source": "Google", "utm_medium": "CPC"}, 7},
		{map[string]string{"utm_source": "google"}, 9}, // medium missing: not campaign 7
		{map[string]string{"fbclid": "x"}, 8},
		{map[string]string{}, 9},
	} {
		if got := Choose(ws, c.visit); got == nil || got.ID != c.want {
			t.Errorf("%v: got %v, want campaign %d", c.visit, got, c.want)
		}
	}
}

func post(s *Service, path, origin, body string) (int, string, string) {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.SetRequestURI(path)
	if origin != "" {
		ctx.Request.Header.Set("Origin", origin)
	}
	ctx.Request.SetBodyString(body)
	s.Handler(&ctx)
	return ctx.Response.StatusCode(), string(ctx.Response.Body()), string(ctx.Response.Header.Peek("Access-Control-Allow-Origin"))
}

// postFrom posts a session request as a client at peer (and X-Forwarded-For xff) would.
func postFrom(s *Service, peer, xff, body string) (int, string, string) {
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI("/v1/sessions?w=1")
	req.Header.Set("Origin", "https://example.com")
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	req.SetBodyString(body)
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.ParseIP(peer), Port: 40000}, nil)
	s.Handler(&ctx)
	return ctx.Response.StatusCode(), string(ctx.Response.Body()), string(ctx.Response.Header.Peek("Retry-After"))
}

// An address may start tracker.new_sessions_per_minute sessions a minute; heartbeats of its
// sessions go on past it, other addresses are not affected, and behind a trusted proxy each
// visitor counts by the address X-Forwarded-For gives.
func TestNewSessionsAreLimitedPerAddress(t *testing.T) {
	fake := clock.NewFake(time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC))
	cfg := testConfig(t, 3)
	cfg.Workspaces[0].Tracker.NewSessionsPerMinute = 6
	cfg.Server.TrustedProxies = []string{"127.0.0.1"}
	var logs strings.Builder
	s, _ := newService(t, cfg, fake)
	s.opt.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	body := `{"attribution": {"utm_source": "google", "utm_medium": "cpc"}}`
	var first string
	for i := 0; i < 6; i++ {
		code, b, _ := postFrom(s, "203.0.113.7", "", body)
		if code != 200 {
			t.Fatalf("session %d: %d %s", i+1, code, b)
		}
		if i == 0 {
			var r Response
			json.Unmarshal([]byte(b), &r)
			first = r.SessionID
		}
	}
	code, b, retry := postFrom(s, "203.0.113.7", "", body)
	if code != 429 || !strings.Contains(b, `"code":"rate_limited"`) || retry != "10" {
		t.Fatalf("the 7th session in a minute: %d %s Retry-After %q", code, b, retry)
	}
	// An unknown session id is a new session too.
	if code, _, _ := postFrom(s, "203.0.113.7", "", `{"session_id": "s_made_up"}`); code != 429 {
		t.Fatalf("a made-up session id: %d", code)
	}
	// A heartbeat is not a new session.
	if code, b, _ := postFrom(s, "203.0.113.7", "", `{"session_id": "`+first+`"}`); code != 200 || !strings.Contains(b, first) {
		t.Fatalf("a heartbeat over the limit: %d %s", code, b)
	}
	// Another address, and another host of the same IPv6 /64 (one limit) against another /64.
	if code, _, _ := postFrom(s, "198.51.100.1", "", body); code != 200 {
		t.Fatalf("another address: %d", code)
	}
	for i := 0; i < 6; i++ {
		postFrom(s, "2001:db8:1:2::1", "", body)
	}
	if code, _, _ := postFrom(s, "2001:db8:1:2::ffff", "", body); code != 429 {
		t.Fatalf("the same /64: %d", code)
	}
	if code, _, _ := postFrom(s, "2001:db8:1:3::1", "", body); code != 200 {
		t.Fatalf("another /64: %d", code)
	}
	// Behind the trusted proxy, visitors count by X-Forwarded-For; a client cannot forge it.
	if code, _, _ := postFrom(s, "127.0.0.1", "192.0.2.50", body); code != 200 {
		t.Fatalf("a visitor through the proxy: %d", code)
	}
	if code, _, _ := postFrom(s, "127.0.0.1", "203.0.113.7", body); code != 429 {
		t.Fatalf("the limited visitor through the proxy: %d", code)
	}
	if code, _, _ := postFrom(s, "203.0.113.7", "192.0.2.99", body); code != 429 {
		t.Fatalf("a forged X-Forwarded-For from an untrusted peer: %d", code)
	}
	// Ten seconds give one token back; a minute all six.
	fake.Advance(10 * time.Second)
	if code, _, _ := postFrom(s, "203.0.113.7", "", body); code != 200 {
		t.Fatalf("after 10s: %d", code)
	}
	if code, _, _ := postFrom(s, "203.0.113.7", "", body); code != 429 {
		t.Fatalf("a second one after 10s: %d", code)
	}
	fake.Advance(time.Minute)
	for i := 0; i < 6; i++ {
		if code, _, _ := postFrom(s, "203.0.113.7", "", body); code != 200 {
			t.Fatalf("a minute later, session %d: %d", i+1, code)
		}
	}
	if code, _, _ := postFrom(s, "203.0.113.7", "", body); code != 429 {
		t.Fatalf("a minute later, session 7: %d", code)
	}
	if st := s.Stats(); st.Limited != 7 {
		t.Fatalf("limited %d, want 7", st.Limited)
	}
	if n := strings.Count(logs.String(), "over its limit"); n != 2 {
		t.Fatalf("%d warnings, want one a minute (2):\n%s", n, logs.String())
	}
	// 0: no limit.
	cfg.Workspaces[0].Tracker.NewSessionsPerMinute = 0
	for i := 0; i < 20; i++ {
		if code, _, _ := postFrom(s, "203.0.113.7", "", body); code != 200 {
			t.Fatalf("without a limit, session %d: %d", i+1, code)
		}
	}
}

// In a cluster the limit is one budget for all the nodes (store.Pacer): an address that spreads
// its new sessions over two nodes gets a minute's worth in all, not one per node.
func TestNewSessionsLimitIsOneBudgetForACluster(t *testing.T) {
	srv, err := jetstream.StartServer(jetstream.ServerOptions{Name: "n1", Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	fake := clock.NewFake(time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC))
	cfg := testConfig(t, 3)
	cfg.Workspaces[0].Tracker.NewSessionsPerMinute = 4
	node := func() *Service {
		st, err := jetstream.Open(context.Background(), jetstream.Options{URLs: []string{srv.ClientURL()}, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		s := New(Options{Store: st, Config: func() *config.Config { return cfg }, Clock: fake, Logger: quiet})
		if err := s.Provision(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		return s
	}
	nodes := []*Service{node(), node()}
	body := `{"attribution": {"utm_source": "google", "utm_medium": "cpc"}}`
	for i := range 4 {
		if code, b, _ := postFrom(nodes[i%2], "203.0.113.7", "", body); code != 200 {
			t.Fatalf("session %d, on node %d: %d %s", i+1, i%2+1, code, b)
		}
	}
	for i, s := range nodes {
		if code, _, retry := postFrom(s, "203.0.113.7", "", body); code != 429 || retry != "15" {
			t.Fatalf("a fifth session in the minute, on node %d: %d, Retry-After %q", i+1, code, retry)
		}
	}
	if code, _, _ := postFrom(nodes[1], "198.51.100.9", "", body); code != 200 {
		t.Fatalf("another address: %d", code)
	}
	fake.Advance(15 * time.Second)
	if code, _, _ := postFrom(nodes[1], "203.0.113.7", "", body); code != 200 {
		t.Fatalf("15 s later: %d", code)
	}
	if code, _, _ := postFrom(nodes[0], "203.0.113.7", "", body); code != 429 {
		t.Fatalf("15 s later, a second one: %d", code)
	}
}

// downPacer is a Badger store that says it shares its limits (store.Pacer) but cannot answer:
// each Pace returns err.
type downPacer struct {
	*badgerstore.Store
	err error
}

func (p downPacer) Pace(context.Context, string, pace.Rate, time.Time) (time.Duration, error) {
	return 0, p.err
}

// A shared limit that does not answer is no reason to refuse a visitor: the node counts alone,
// and says so once a minute. Nor is one contended by other visitors from the address taking
// shares at once, which is no trouble to warn of.
func TestNewSessionsLimitFallsBackToTheNode(t *testing.T) {
	for _, c := range []struct {
		err      error
		warnings int
	}{
		{errors.New("nats: timeout"), 1},
		{fmt.Errorf("pace tracker.1.203.0.113.7: %w", store.ErrContended), 0},
	} {
		fake := clock.NewFake(time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC))
		cfg := testConfig(t, 3)
		cfg.Workspaces[0].Tracker.NewSessionsPerMinute = 2
		_, st := newService(t, cfg, fake)
		var logs strings.Builder
		s := New(Options{Store: downPacer{st, c.err}, Config: func() *config.Config { return cfg }, Clock: fake, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err := s.Provision(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		body := `{"attribution": {"utm_source": "google", "utm_medium": "cpc"}}`
		for i, want := range []int{200, 200, 429, 429} {
			if code, _, _ := postFrom(s, "203.0.113.7", "", body); code != want {
				t.Fatalf("%v: session %d: %d, want %d", c.err, i+1, code, want)
			}
		}
		if n := strings.Count(logs.String(), "this node counts alone"); n != c.warnings {
			t.Fatalf("%v: %d warnings, want %d:\n%s", c.err, n, c.warnings, logs.String())
		}
	}
}

// Behind a proxy nobody listed in server.trusted_proxies, every visitor counts as the proxy: the
// warning says so.
func TestLimitWarnsOfAnUntrustedProxy(t *testing.T) {
	cfg := testConfig(t, 3)
	cfg.Workspaces[0].Tracker.NewSessionsPerMinute = 1
	var logs strings.Builder
	s, _ := newService(t, cfg, clock.NewFake(time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC)))
	s.opt.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	body := `{"attribution": {"utm_source": "google", "utm_medium": "cpc"}}`
	postFrom(s, "127.0.0.1", "198.51.100.1", body)
	if code, _, _ := postFrom(s, "127.0.0.1", "198.51.100.2", body); code != 429 {
		t.Fatalf("the second visitor through an untrusted proxy: %d", code)
	}
	if !strings.Contains(logs.String(), "list it in server.trusted_proxies") {
		t.Fatalf("no hint:\n%s", logs.String())
	}
}

func TestLimiterStaysBounded(t *testing.T) {
	var l limiter
	now := time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC)
	for i := 0; i < 3*maxBuckets; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if ok, _ := l.allow(limitKeyOf(1, a), 60, now); !ok {
			t.Fatalf("address %d refused its first session", i)
		}
		if len(l.buckets) > maxBuckets {
			t.Fatalf("%d buckets", len(l.buckets))
		}
		if i%1000 == 0 {
			now = now.Add(time.Second)
		}
	}
	// Once there are pruneAt, the buckets that have refilled are dropped; a busy one is kept.
	l = limiter{}
	for i := 0; i < pruneAt-1; i++ {
		l.allow(limitKeyOf(1, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})), 60, now)
	}
	now = now.Add(2 * time.Minute)
	hot := limitKeyOf(1, netip.MustParseAddr("203.0.113.7"))
	for range 60 {
		l.allow(hot, 60, now)
	}
	l.allow(limitKeyOf(1, netip.MustParseAddr("192.0.2.1")), 60, now)
	if _, kept := l.buckets[hot]; len(l.buckets) != 2 || !kept {
		t.Fatalf("%d buckets after pruning (the busy one kept: %v), want 2", len(l.buckets), kept)
	}
}

// Crawlers rendering the page get the site's own numbers: no session, no pool number taken.
func TestCrawlersTakeNoNumber(t *testing.T) {
	cfg := testConfig(t, 2)
	s, _ := newService(t, cfg, clock.Real{})
	body := `{"attribution": {"utm_source": "google", "utm_medium": "cpc"}}`
	for _, c := range []struct {
		ua      string
		crawler bool
	}{
		{"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; +http://www.google.com/bot.html) Chrome/120.0.6099.216 Safari/537.36", true},
		{"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", true},
		{"Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", true},
		{"Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse", true},
		{"Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)", true},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", false},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", false},
		{"Mozilla/5.0 (Linux; Android 10; Cubot X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36", false},
		{"", false},
	} {
		if got := Crawler([]byte(c.ua)); got != c.crawler {
			t.Errorf("Crawler(%q) = %v", c.ua, got)
		}
	}
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.SetRequestURI("/v1/sessions?w=1")
	ctx.Request.Header.Set("Origin", "https://example.com")
	ctx.Request.Header.SetUserAgent("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
	ctx.Request.SetBodyString(body)
	s.Handler(&ctx)
	var r Response
	if err := json.Unmarshal(ctx.Response.Body(), &r); err != nil || ctx.Response.StatusCode() != 200 || r.SessionID != "" || r.Number != nil {
		t.Fatalf("crawler: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	st := s.Stats()
	if st.Crawlers != 1 || st.Created != 0 || st.Pools[0].Held != 0 {
		t.Fatalf("a crawler's request changed the pools: %+v", st)
	}
	if code, b, _ := post(s, "/v1/sessions?w=1", "https://example.com", body); code != 200 || !strings.Contains(b, `"number":"+1800555`) {
		t.Fatalf("a browser after the crawler: %d %s", code, b)
	}
}

func TestBadSessionRequests(t *testing.T) {
	cfg := testConfig(t, 2)
	s, _ := newService(t, cfg, clock.Real{})
	ok := `{"attribution": {"utm_source": "google", "utm_medium": "cpc"}}`
	for _, c := range []struct {
		name, path, origin, body string
		code                     int
		msg                      string
	}{
		{"good", "/v1/sessions?w=1", "https://example.com", ok, 200, `"number":"+1800555`},
		{"disallowed origin", "/v1/sessions?w=1", "https://evil.example", ok, 403, "origin_not_allowed"},
		{"no origin", "/v1/sessions?w=1", "", ok, 403, "origin_not_allowed"},
		{"unknown workspace", "/v1/sessions?w=99", "https://example.com", ok, 404, "unknown_workspace"},
		{"bad w", "/v1/sessions?w=x", "https://example.com", ok, 400, "workspace id"},
		{"malformed", "/v1/sessions?w=1", "https://example.com", `{"attribution": `, 400, "bad_request"},
		{"unknown key", "/v1/sessions?w=1", "https://example.com", `{"visitor": 1}`, 400, "unknown field"},
		{"unknown field", "/v1/sessions?w=1", "https://example.com", `{"attribution": {"password": "x"}}`, 400, "not an attribution field"},
		{"too long", "/v1/sessions?w=1", "https://example.com", `{"attribution": {"utm_term": "` + strings.Repeat("x", 3000) + `"}}`, 400, "over 2048"},
		{"oversized", "/v1/sessions?w=1", "https://example.com", `{"attribution": {"utm_term": "` + strings.Repeat("x", 9000) + `"}}`, 413, "8 KiB"},
		{"workspace disagrees", "/v1/sessions?w=1", "https://example.com", `{"workspace_id": 2}`, 400, "disagree"},
	} {
		code, body, acao := post(s, c.path, c.origin, c.body)
		if code != c.code || !strings.Contains(body, c.msg) {
			t.Errorf("%s: %d %s", c.name, code, body)
		}
		if c.code == 200 && acao != "https://example.com" {
			t.Errorf("%s: Access-Control-Allow-Origin %q", c.name, acao)
		}
		if c.code == 403 && acao != "" {
			t.Errorf("%s: CORS granted to a refused origin", c.name)
		}
	}
	// Preflight.
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("OPTIONS")
	ctx.Request.SetRequestURI("/v1/sessions?w=1")
	ctx.Request.Header.Set("Origin", "https://example.com")
	s.Handler(&ctx)
	if ctx.Response.StatusCode() != 204 || string(ctx.Response.Header.Peek("Access-Control-Allow-Methods")) == "" {
		t.Errorf("preflight: %d", ctx.Response.StatusCode())
	}
}

func TestScript(t *testing.T) {
	s, _ := newService(t, testConfig(t, 1), clock.Real{})
	raw, gz := s.ScriptSize()
	if gz >= 5<<10 {
		t.Fatalf("tracker is %d bytes gzipped, over 5 KB", gz)
	}
	t.Logf("tracker: %d bytes, %d gzipped", raw, gz)
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/t.js?w=1")
	ctx.Request.Header.Set("Accept-Encoding", "gzip")
	s.Handler(&ctx)
	etag := string(ctx.Response.Header.Peek("ETag"))
	if ctx.Response.StatusCode() != 200 || etag == "" || string(ctx.Response.Header.Peek("Content-Encoding")) != "gzip" {
		t.Fatalf("script: %d %q", ctx.Response.StatusCode(), etag)
	}
	var again fasthttp.RequestCtx
	again.Request.SetRequestURI("/t.js?w=1")
	again.Request.Header.Set("If-None-Match", etag)
	s.Handler(&again)
	if again.Response.StatusCode() != 304 {
		t.Fatalf("conditional GET: %d", again.Response.StatusCode())
	}
}

// FuzzSessionRequests: whatever a website (or anyone) posts gets a 2xx or a 4xx with the JSON
// error shape, never a panic or a 5xx; a session answered is one the store holds.
func FuzzSessionRequests(f *testing.F) {
	for _, b := range []string{`{"attribution": {"utm_source": "google", "utm_medium": "cpc"}}`, `{"session_id": "x", "workspace_id": 1}`,
		`{"attribution": {"gclid": "\u0000\ud800"}}`, `{"attribution": null}`, `[]`, `{"workspace_id": 1e400}`} {
		f.Add("w=1", "https://example.com", b, "Mozilla/5.0", "198.51.100.7")
	}
	f.Add("w=1&w=2", "https://example.com", `{}`, "Googlebot/2.1", "10.0.0.1, 198.51.100.7")
	f.Add("w=-1", "null", `{}`, "", "[2001:db8::1]:80, garbage")
	cfg := testConfig(f, 3)
	// The limit runs (every request goes through the client address and the buckets) without
	// refusing, so every input reaches the store.
	cfg.Workspaces[0].Tracker.NewSessionsPerMinute = 1 << 30
	cfg.Server.TrustedProxies = []string{"127.0.0.1"}
	s, st := newService(f, cfg, clock.Real{})
	f.Fuzz(func(t *testing.T, query, origin, body, userAgent, forwardedFor string) {
		if strings.ContainsFunc(query, func(r rune) bool { return r <= ' ' || r == '#' || r == 0x7f }) {
			return // not a request line an HTTP server would take
		}
		var req fasthttp.Request
		req.Header.SetMethod("POST")
		req.SetRequestURI("/v1/sessions?" + query)
		req.Header.Set("Origin", origin)
		req.Header.SetUserAgent(userAgent)
		req.Header.Set("X-Forwarded-For", forwardedFor)
		req.SetBodyString(body)
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
		if !s.Handler(&ctx) {
			t.Fatal("not handled")
		}
		code, resp := ctx.Response.StatusCode(), ctx.Response.Body()
		switch {
		case code >= 500:
			t.Fatalf("%q %q %q: %d %s", query, origin, body, code, resp)
		case code >= 400 && !strings.Contains(string(resp), `"error":{"code":`):
			t.Fatalf("%q %q %q: %d without the error shape: %s", query, origin, body, code, resp)
		case code == 200:
			var r struct {
				SessionID string `json:"session_id"`
			}
			if err := json.Unmarshal(resp, &r); err != nil {
				t.Fatalf("200 with %s", resp)
			}
			if r.SessionID == "" {
				if !Crawler([]byte(userAgent)) {
					t.Fatalf("200 without a session for %q: %s", userAgent, resp)
				}
				return
			}
			if _, err := st.Session(context.Background(), r.SessionID); err != nil {
				t.Fatalf("session %s answered but not stored: %v", r.SessionID, err)
			}
		}
	})
}

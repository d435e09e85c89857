// Package sessions speaks to browsers: it serves the tracker script, creates and refreshes
// visitor sessions, hands out numbers from a campaign's pool, and answers which session held a
// number at a time, so that calls carry the visit's attribution.
package sessions

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringgate/ringgate/gateway/clock"
	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/httpx"
	"github.com/ringgate/ringgate/gateway/store"
	"github.com/valyala/fasthttp"
)

//go:embed tracker.js
var trackerJS []byte

// Fields are the attribution fields a visit carries, named as in the webhook payloads.
var Fields = []string{
	"utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
	"gclid", "gbraid", "wbraid", "fbclid", "msclkid", "ttclid", "li_fat_id",
	"ga_client_id", "ga_session_id", "referrer_url", "landing_page_url",
}

var known = func() map[string]bool {
	m := map[string]bool{}
	for _, f := range Fields {
		m[f] = true
	}
	return m
}()

// Limits of a session request.
const (
	maxBody  = 8 << 10
	maxValue = 2048
	// holdGrace keeps a session's record after its hold ends, for calls that start late.
	holdGrace = 24 * time.Hour
)

// Options build a Service.
type Options struct {
	Store  store.SessionStore
	Config func() *config.Config
	Clock  clock.Clock
	Logger *slog.Logger
}

// Service is the tracker's back end. Its pools live in memory, rebuilt from the stored sessions
// at start; each session is stored as it changes.
type Service struct {
	opt Options

	mu       sync.RWMutex
	pools    map[int64]*pool  // by campaign id
	byNumber map[string]*pool // pool number -> its pool

	script     []byte
	scriptGzip []byte
	etag       string
	restored   bool // the stored sessions were replayed into the pools

	limit                                 limiter
	created, refreshed, crawlers, limited atomic.Int64
	limitLogged                           atomic.Int64 // unix seconds of the last warning about the limit
	paceErrLogged                         atomic.Int64 // unix seconds of the last warning about the shared limit
}

// New returns a Service; call Provision before use.
func New(opt Options) *Service {
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	s := &Service{opt: opt, pools: map[int64]*pool{}, byNumber: map[string]*pool{}, script: trackerJS}
	sum := sha256.Sum256(trackerJS)
	s.etag = `"` + hex.EncodeToString(sum[:8]) + `"`
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(trackerJS)
	zw.Close()
	s.scriptGzip = buf.Bytes()
	return s
}

// ScriptSize reports the tracker's size, raw and gzipped.
func (s *Service) ScriptSize() (raw, gzipped int) { return len(s.script), len(s.scriptGzip) }

// Provision builds the pools of a config, keeping the state of numbers that stay in a pool, and
// on the first call replays the stored sessions.
func (s *Service) Provision(ctx context.Context, cfg *config.Config) error {
	s.mu.Lock()
	first := !s.restored
	s.restored = true
	old := s.byNumber
	pools, byNumber := map[int64]*pool{}, map[string]*pool{}
	for _, ws := range cfg.Workspaces {
		for _, cp := range ws.Campaigns {
			var nums []string
			for _, n := range cp.Numbers {
				if n.Pool {
					nums = append(nums, n.Number)
				}
			}
			if len(nums) == 0 {
				continue
			}
			p := newPool(nums)
			for _, n := range p.numbers {
				if op := old[n.e164]; op != nil {
					op.mu.Lock()
					if on := op.byE164[n.e164]; on != nil {
						n.holds, n.released = append([]holding(nil), on.holds...), on.released
					}
					op.mu.Unlock()
				}
				byNumber[n.e164] = p
			}
			pools[cp.ID] = p
		}
	}
	s.pools, s.byNumber = pools, byNumber
	s.mu.Unlock()
	if !first {
		return nil
	}
	return s.restore(ctx)
}

// restore rebuilds the pools' holds after a start, in memory bounded by the pools' size however
// many sessions are stored: a store that several processes share keeps each number's holds in
// one record, read for each pool number; otherwise the stored sessions are streamed, and each
// number keeps its keepHolds latest.
func (s *Service) restore(ctx context.Context) error {
	s.mu.RLock()
	byNumber := s.byNumber
	pools := s.pools
	s.mu.RUnlock()
	if shared, ok := s.opt.Store.(store.NumberHolds); ok {
		for number, p := range byNumber {
			hs, _, err := shared.Holds(ctx, number)
			if err != nil {
				return fmt.Errorf("restore the holds of %s: %w", number, err)
			}
			p.sync(number, hs)
		}
		return nil
	}
	type held struct {
		campaign int64
		number   string
	}
	latest := map[held][]store.Session{}
	stored := 0
	err := s.opt.Store.Sessions(ctx, func(ss store.Session) error {
		stored++
		p := pools[ss.CampaignID]
		if ss.Number == "" || p == nil || p.byE164[ss.Number] == nil {
			return nil // no number, or one that has left the pool since
		}
		k := held{ss.CampaignID, ss.Number}
		l := latest[k]
		if len(l) < keepHolds {
			latest[k] = append(l, ss)
			return nil
		}
		oldest := 0
		for i := range l {
			if l[i].AssignedAt.Before(l[oldest].AssignedAt) {
				oldest = i
			}
		}
		if ss.AssignedAt.After(l[oldest].AssignedAt) {
			l[oldest] = ss
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore sessions: %w", err)
	}
	for k, l := range latest {
		sort.Slice(l, func(i, j int) bool { return l[i].AssignedAt.Before(l[j].AssignedAt) })
		for _, ss := range l {
			pools[k.campaign].restore(ss.ID, ss.Number, ss.AssignedAt, ss.HoldUntil)
		}
	}
	s.opt.Logger.Debug("visitor sessions restored", "stored", stored, "holds", len(latest))
	return nil
}

// Handler serves GET /t.js and POST (and OPTIONS) /v1/sessions; it reports false for other paths.
func (s *Service) Handler(ctx *fasthttp.RequestCtx) bool {
	switch string(ctx.Path()) {
	case "/t.js":
		s.serveScript(ctx)
	case "/v1/sessions":
		s.serveSession(ctx)
	default:
		return false
	}
	return true
}

func (s *Service) serveScript(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Error("method not allowed\n", fasthttp.StatusMethodNotAllowed)
		return
	}
	h := &ctx.Response.Header
	h.Set("ETag", s.etag)
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("Vary", "Accept-Encoding")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	if string(ctx.Request.Header.Peek("If-None-Match")) == s.etag {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	ctx.SetContentType("application/javascript; charset=utf-8")
	if ctx.Request.Header.HasAcceptEncoding("gzip") {
		h.Set("Content-Encoding", "gzip")
		ctx.SetBody(s.scriptGzip)
		return
	}
	ctx.SetBody(s.script)
}

// request is what the tracker posts.
type request struct {
	WorkspaceID int64             `json:"workspace_id"`
	SessionID   string            `json:"session_id"`
	Attribution map[string]string `json:"attribution"`
}

// Response is what the tracker gets back.
type Response struct {
	SessionID     string    `json:"session_id"`
	Number        *string   `json:"number"`
	NumberDisplay *string   `json:"number_display"`
	ExpiresAt     time.Time `json:"expires_at"`
	SwapNumbers   []string  `json:"swap_numbers"`
}

// errOrigin is a request from a site the workspace does not allow.
var errOrigin = errors.New("origin not allowed")

func (s *Service) cors(ctx *fasthttp.RequestCtx, ws *config.Workspace) error {
	origin := string(ctx.Request.Header.Peek("Origin"))
	for _, o := range ws.Tracker.AllowedOrigins {
		if strings.EqualFold(strings.TrimRight(o, "/"), origin) {
			h := &ctx.Response.Header
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Vary", "Origin")
			h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Content-Type")
			h.Set("Access-Control-Max-Age", "600")
			return nil
		}
	}
	return errOrigin
}

func (s *Service) serveSession(ctx *fasthttp.RequestCtx) {
	cfg := s.opt.Config()
	var ws *config.Workspace
	if w := ctx.QueryArgs().Peek("w"); len(w) > 0 {
		id, err := strconv.ParseInt(string(w), 10, 64)
		if err != nil {
			httpx.Error(ctx, 400, "bad_request", "w must be a workspace id")
			return
		}
		if ws = cfg.Workspace(id); ws == nil {
			httpx.Error(ctx, 404, "unknown_workspace", "no workspace "+string(w))
			return
		}
	}
	if ctx.IsOptions() { // CORS preflight
		if ws == nil || s.cors(ctx, ws) != nil {
			ctx.SetStatusCode(fasthttp.StatusForbidden)
			return
		}
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	}
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST, OPTIONS")
		httpx.Error(ctx, 405, "method_not_allowed", "POST a session")
		return
	}
	body := ctx.PostBody()
	if len(body) > maxBody {
		httpx.Error(ctx, 413, "too_large", "a session request is at most 8 KiB")
		return
	}
	var req request
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		httpx.Error(ctx, 400, "bad_request", "body must be JSON {workspace_id, session_id, attribution}: "+err.Error())
		return
	}
	if ws == nil {
		if ws = cfg.Workspace(req.WorkspaceID); ws == nil {
			httpx.Error(ctx, 404, "unknown_workspace", fmt.Sprintf("no workspace %d", req.WorkspaceID))
			return
		}
	} else if req.WorkspaceID != 0 && req.WorkspaceID != ws.ID {
		httpx.Error(ctx, 400, "bad_request", "workspace_id and w disagree")
		return
	}
	if err := s.cors(ctx, ws); err != nil {
		httpx.Error(ctx, 403, "origin_not_allowed", "this site is not in the workspace's tracker.allowed_origins")
		return
	}
	for k, v := range req.Attribution {
		if !known[k] {
			httpx.Error(ctx, 400, "bad_request", fmt.Sprintf("%q is not an attribution field", k))
			return
		}
		if len(v) > maxValue {
			httpx.Error(ctx, 400, "bad_request", fmt.Sprintf("%s is over %d characters", k, maxValue))
			return
		}
	}
	if Crawler(ctx.Request.Header.UserAgent()) {
		// A search engine rendering the page keeps the site's own numbers (what it should index),
		// and takes no pool number from a visitor who may call.
		s.crawlers.Add(1)
		httpx.JSON(ctx, 200, Response{SwapNumbers: []string{}, ExpiresAt: s.opt.Clock.Now().UTC()})
		return
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := s.session(sctx, ws, req.SessionID, req.Attribution, func() (bool, time.Duration) {
		return s.admit(ctx, cfg, ws)
	})
	var limited limitedError
	if errors.As(err, &limited) {
		secs := int64(math.Ceil(limited.retry.Seconds()))
		ctx.Response.Header.Set("Retry-After", strconv.FormatInt(secs, 10))
		httpx.Error(ctx, 429, "rate_limited", fmt.Sprintf("this address started more than %d sessions in a minute; try again in %d s",
			ws.Tracker.NewSessionsPerMinute, secs))
		return
	}
	if err != nil {
		s.opt.Logger.Error("visitor session", "workspace", ws.ID, "err", err)
		httpx.Error(ctx, 503, "unavailable", "the session could not be stored")
		return
	}
	httpx.JSON(ctx, 200, resp)
}

// limitedError refuses a new session to an address over tracker.new_sessions_per_minute.
type limitedError struct{ retry time.Duration }

func (e limitedError) Error() string { return "too many new sessions from this address" }

// admit decides whether the client of a request may start a new session.
func (s *Service) admit(ctx *fasthttp.RequestCtx, cfg *config.Config, ws *config.Workspace) (bool, time.Duration) {
	per := ws.Tracker.NewSessionsPerMinute
	if per == 0 {
		return true, 0
	}
	trusted := cfg.Server.TrustedPrefixes()
	addr := httpx.ClientAddr(ctx, trusted)
	now := s.opt.Clock.Now()
	ok, wait := s.take(limitKeyOf(ws.ID, addr), per, now)
	if ok {
		return true, 0
	}
	s.limited.Add(1)
	if last := s.limitLogged.Load(); now.Unix()-last >= 60 && s.limitLogged.CompareAndSwap(last, now.Unix()) {
		args := []any{"workspace", ws.ID, "address", addr.String(), "limit_per_minute", per}
		if len(ctx.Request.Header.Peek("X-Forwarded-For")) > 0 && len(trusted) == 0 {
			args = append(args, "hint", "requests carry X-Forwarded-For: behind a proxy, list it in server.trusted_proxies, or every visitor counts as the proxy")
		}
		s.opt.Logger.Warn("tracker: new sessions refused to an address over its limit (logged once a minute)", args...)
	}
	return false, wait
}

// take takes a new session's share of an address's budget: the store's when several processes
// share it (a cluster, where the limit then holds for all the nodes together), else this
// process's.
func (s *Service) take(key limitKey, perMinute int, now time.Time) (bool, time.Duration) {
	if p, ok := s.opt.Store.(store.Pacer); ok {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		wait, err := p.Pace(ctx, key.String(), rateOf(perMinute), now)
		cancel()
		if err == nil {
			return wait == 0, wait
		}
		// this node's budget then: a visitor is not refused for the store's trouble, nor for
		// other visitors from the address taking shares at the same moment (ErrContended, which
		// is no trouble to warn of)
		if last := s.paceErrLogged.Load(); !errors.Is(err, store.ErrContended) && now.Unix()-last >= 60 && s.paceErrLogged.CompareAndSwap(last, now.Unix()) {
			s.opt.Logger.Warn("tracker: the shared limit of new sessions does not answer; this node counts alone (logged once a minute)", "err", err)
		}
	}
	return s.limit.allow(key, perMinute, now)
}

// Session creates a session (or refreshes the one given) in the workspace and assigns it a
// number from the pool of the first campaign whose source matches the visit.
func (s *Service) Session(ctx context.Context, ws *config.Workspace, id string, attr map[string]string) (Response, error) {
	return s.session(ctx, ws, id, attr, nil)
}

// session is Session, asking admit (when not nil) before it creates a session.
func (s *Service) session(ctx context.Context, ws *config.Workspace, id string, attr map[string]string, admit func() (bool, time.Duration)) (Response, error) {
	now := s.opt.Clock.Now()
	var sess store.Session
	if id != "" && len(id) <= 64 {
		if old, err := s.opt.Store.Session(ctx, id); err == nil && old.WorkspaceID == ws.ID {
			sess = old // first touch wins: the visit keeps the attribution it started with
		}
	}
	if sess.ID == "" {
		if admit != nil {
			if ok, wait := admit(); !ok {
				return Response{}, limitedError{wait}
			}
		}
		sess = store.Session{ID: newID(), WorkspaceID: ws.ID, Attribution: clean(attr), CreatedAt: now}
		if cp := Choose(ws, sess.Attribution); cp != nil {
			sess.CampaignID = cp.ID
		}
		s.created.Add(1)
	} else {
		s.refreshed.Add(1)
	}
	resp := Response{SessionID: sess.ID, SwapNumbers: []string{}}
	cp := ws.Campaign(sess.CampaignID)
	s.mu.RLock()
	p := s.pools[sess.CampaignID]
	s.mu.RUnlock()
	until := now.Add(ws.Tracker.SessionHold)
	if cp != nil && p != nil {
		number, from, reused, err := s.assign(ctx, p, &sess, now, until)
		if err != nil {
			return resp, err
		}
		if reused {
			s.opt.Logger.Warn("number pool exhausted: reusing the longest-held number", "campaign", cp.ID, "number", number)
		}
		sess.Number, sess.AssignedAt, sess.HoldUntil = number, from, until
		display := Display(number)
		resp.Number, resp.NumberDisplay = &number, &display
		resp.SwapNumbers = append(resp.SwapNumbers, cp.SwapNumbers...)
	} else {
		sess.Number, sess.HoldUntil = "", until
	}
	resp.ExpiresAt = until.UTC()
	if err := s.opt.Store.PutSession(ctx, sess, store.SessionTTL(sess, now, holdGrace)); err != nil {
		return resp, err
	}
	return resp, nil
}

// assign picks a number for the session from the pool. With a store that several processes
// share, the pick is confirmed on the number's shared record with compare-and-set; a number
// another process handed out meanwhile is learned, and the next one tried.
func (s *Service) assign(ctx context.Context, p *pool, sess *store.Session, now, until time.Time) (string, time.Time, bool, error) {
	shared, ok := s.opt.Store.(store.NumberHolds)
	for try := 0; ; try++ {
		number, from, reused := p.assign(sess.ID, sess.Number, now, until)
		if !ok {
			return number, from, reused, nil
		}
		won, from, err := claim(ctx, shared, p, sess.ID, number, now, until, reused || try >= len(p.numbers))
		if err != nil || won {
			return number, from, reused, err
		}
	}
}

// claim makes session the holder of number until until on the shared record, unless another
// session holds it now (and force is off: the pool is not exhausted). It reports whether the
// session holds the number, and since when.
func claim(ctx context.Context, shared store.NumberHolds, p *pool, session, number string, now, until time.Time, force bool) (bool, time.Time, error) {
	for {
		hs, ver, err := shared.Holds(ctx, number)
		if err != nil {
			return false, time.Time{}, err
		}
		var cur *store.Hold
		if n := len(hs); n > 0 && hs[n-1].Until.After(now) {
			cur = &hs[n-1]
		}
		from := now
		switch {
		case cur != nil && cur.Session == session: // a heartbeat
			cur.Until, from = until, cur.From
		case cur != nil && !force:
			p.sync(number, hs) // someone else's: learn it, try another number
			return false, time.Time{}, nil
		default:
			if cur != nil {
				cur.Until = now // the pool is exhausted: the longest hold ends here
			}
			hs = append(hs, store.Hold{Session: session, From: now, Until: until})
			if len(hs) > keepHolds {
				hs = hs[len(hs)-keepHolds:]
			}
		}
		_, err = shared.SetHolds(ctx, number, hs, ver)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return false, time.Time{}, err
		}
		p.sync(number, hs)
		return true, from, nil
	}
}

func clean(attr map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range attr {
		if v = strings.TrimSpace(v); v != "" && known[k] {
			out[k] = v
		}
	}
	return out
}

var idEnc = base32.StdEncoding.WithPadding(base32.NoPadding)

func newID() string {
	b := make([]byte, 15)
	rand.Read(b)
	return "s_" + strings.ToLower(idEnc.EncodeToString(b))
}

// Choose returns the first campaign with a pool whose source matches the visit: every key equal
// (case-insensitive), "*" for any value, and referrer matching the referrer's host.
func Choose(ws *config.Workspace, visit map[string]string) *config.Campaign {
	for i := range ws.Campaigns {
		cp := &ws.Campaigns[i]
		pooled := false
		for _, n := range cp.Numbers {
			pooled = pooled || n.Pool
		}
		if pooled && matches(cp.Source, visit) {
			return cp
		}
	}
	return nil
}

func matches(source, visit map[string]string) bool {
	for k, want := range source {
		if k == "referrer" {
			u, err := url.Parse(visit["referrer_url"])
			if err != nil || !strings.Contains(strings.ToLower(u.Hostname()), strings.ToLower(want)) {
				return false
			}
			continue
		}
		got := visit[k]
		if want == "*" {
			if got == "" {
				return false
			}
			continue
		}
		if !strings.EqualFold(got, want) {
			return false
		}
	}
	return true
}

// Display formats a number for people: (800) 555-1234 for North American numbers.
func Display(e164 string) string {
	if len(e164) == 12 && strings.HasPrefix(e164, "+1") {
		d := e164[2:]
		return "(" + d[:3] + ") " + d[3:6] + "-" + d[6:]
	}
	return e164
}

// Match implements calls.SessionMatcher: the attribution of the session that held the number at
// t, or nil.
func (s *Service) Match(ctx context.Context, workspaceID int64, number string, t time.Time) (*store.Attribution, error) {
	s.mu.RLock()
	p := s.byNumber[number]
	s.mu.RUnlock()
	if p == nil {
		return nil, nil
	}
	var id string
	if shared, isShared := s.opt.Store.(store.NumberHolds); isShared {
		hs, _, err := shared.Holds(ctx, number) // the hold may have been made on another node
		if err != nil {
			return nil, err
		}
		for i := len(hs) - 1; i >= 0 && id == ""; i-- {
			if !hs[i].From.After(t) && hs[i].Until.After(t) {
				id = hs[i].Session
			}
		}
	} else {
		id, _ = p.holder(number, t)
	}
	if id == "" {
		return nil, nil
	}
	sess, err := s.opt.Store.Session(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if sess.WorkspaceID != workspaceID {
		return nil, nil
	}
	return &store.Attribution{SessionID: sess.ID, Fields: sess.Attribution}, nil
}

// Stats are the tracker's figures, for metrics.
type Stats struct {
	Created, Refreshed int64
	Crawlers           int64 // requests from crawlers, answered without a session
	Limited            int64 // new sessions refused to addresses over tracker.new_sessions_per_minute
	Pools              []PoolStats
}

// PoolStats is one campaign's pool.
type PoolStats struct {
	CampaignID int64
	Held, Size int
	Reuses     int64
}

// Stats reports sessions handled and pool use now.
func (s *Service) Stats() Stats {
	now := s.opt.Clock.Now()
	st := Stats{Created: s.created.Load(), Refreshed: s.refreshed.Load(), Crawlers: s.crawlers.Load(), Limited: s.limited.Load()}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for id, p := range s.pools {
		held, size, reuses := p.stats(now)
		st.Pools = append(st.Pools, PoolStats{CampaignID: id, Held: held, Size: size, Reuses: reuses})
	}
	sort.Slice(st.Pools, func(i, j int) bool { return st.Pools[i].CampaignID < st.Pools[j].CampaignID })
	return st
}

// crawlerMarks are what the user agents of search engines and other crawlers say of themselves
// (lowercase). Phones whose model name ends in "bot" (Cubot) are not crawlers.
var crawlerMarks = []string{"bot", "crawl", "spider", "slurp", "facebookexternalhit", "mediapartners-google", "lighthouse"}

// Crawler reports whether a user agent is a crawler's: search engines render pages and run the
// tracker like a browser, and would each take a pool number for a visit that never calls.
func Crawler(userAgent []byte) bool {
	ua := strings.ToLower(string(userAgent))
	ua = strings.ReplaceAll(ua, "cubot", "")
	for _, m := range crawlerMarks {
		if strings.Contains(ua, m) {
			return true
		}
	}
	return false
}

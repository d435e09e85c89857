package admin

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ringgate/ringgate/gateway/calls"
	"github.com/ringgate/ringgate/gateway/delivery"
	"github.com/ringgate/ringgate/gateway/sessions"
	"github.com/ringgate/ringgate/gateway/store"
	"github.com/valyala/fasthttp"
)

//go:embed web
var web embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"fmtTime": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"outcomeClass": func(o string) string {
		switch o {
		case "completed":
			return "success"
		case "missed", "blocked":
			return "failed"
		}
		return "pending"
	},
}).ParseFS(web, "web/pages.html"))

const (
	cookieName = "ringgate_session"
	sessionTTL = 12 * time.Hour
)

// page is what every template gets.
type page struct {
	Title, Nav, CSRF, Flash string
	FlashError, Signed      bool
	Live                    bool
	Data                    any
}

func (a *API) mac(parts ...string) string {
	m := hmac.New(sha256.New, []byte(a.opt.Config().Server.Admin.Token))
	m.Write([]byte(strings.Join(parts, "|")))
	return hex.EncodeToString(m.Sum(nil))
}

// newSession is a signed cookie value: stateless, and void once the admin token changes.
func (a *API) newSession(now time.Time) string {
	exp := strconv.FormatInt(now.Add(sessionTTL).Unix(), 10)
	return "v1." + exp + "." + a.mac("session", exp)
}

func (a *API) validSession(v string, now time.Time) bool {
	parts := strings.Split(v, ".")
	if len(parts) != 3 || parts[0] != "v1" {
		return false
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || now.Unix() > exp {
		return false
	}
	return hmac.Equal([]byte(parts[2]), []byte(a.mac("session", parts[1])))
}

// csrf is the token a signed-in page's forms carry, bound to the session cookie.
func (a *API) csrf(session string) string { return a.mac("csrf", session)[:32] }

func (a *API) bearer(ctx *fasthttp.RequestCtx) bool {
	want := a.opt.Config().Server.Admin.Token
	got, ok := strings.CutPrefix(string(ctx.Request.Header.Peek("Authorization")), "Bearer ")
	return ok && want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// signedIn reports how the request is authenticated: by header (no CSRF needed) or by cookie.
func (a *API) signedIn(ctx *fasthttp.RequestCtx) (byHeader bool, session string, ok bool) {
	if a.bearer(ctx) {
		return true, "", true
	}
	c := string(ctx.Request.Header.Cookie(cookieName))
	if c != "" && a.validSession(c, time.Now()) {
		return false, c, true
	}
	return false, "", false
}

func securityHeaders(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

func (a *API) render(ctx *fasthttp.RequestCtx, status int, name string, p page) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, p); err != nil {
		a.opt.Logger.Error("render dashboard page", "page", name, "err", err)
		ctx.Error("page failed to render; the log has the cause", 500)
		return
	}
	securityHeaders(ctx)
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.SetBody(buf.Bytes())
}

func redirect(ctx *fasthttp.RequestCtx, to, msg string) {
	if msg != "" {
		to += "?msg=" + url.QueryEscape(msg)
	}
	ctx.Redirect(to, fasthttp.StatusSeeOther)
}

func (a *API) static(ctx *fasthttp.RequestCtx, name string) {
	b, err := web.ReadFile("web/" + name)
	if err != nil || (name != "app.js" && name != "style.css") {
		ctx.Error("not found", 404)
		return
	}
	if strings.HasSuffix(name, ".js") {
		ctx.SetContentType("application/javascript; charset=utf-8")
	} else {
		ctx.SetContentType("text/css; charset=utf-8")
	}
	ctx.Response.Header.Set("Cache-Control", "public, max-age=3600")
	ctx.SetBody(b)
}

// dashboard serves the operator's pages.
func (a *API) dashboard(ctx *fasthttp.RequestCtx, path string) {
	if path == "/login" {
		a.login(ctx)
		return
	}
	byHeader, session, ok := a.signedIn(ctx)
	if !ok {
		if ctx.IsGet() {
			redirect(ctx, "/login", "")
			return
		}
		a.render(ctx, 401, "error", page{Title: "Sign in first", Data: "This action needs a signed-in session or a valid admin token."})
		return
	}
	p := page{Signed: true, CSRF: a.csrf(session), Flash: string(ctx.QueryArgs().Peek("msg"))}
	if ctx.IsPost() && !byHeader {
		got := string(ctx.PostArgs().Peek("csrf"))
		if got == "" || !hmac.Equal([]byte(got), []byte(p.CSRF)) {
			a.opt.Logger.Warn("dashboard action refused: bad CSRF token", "path", path, "remote", ctx.RemoteIP().String())
			a.render(ctx, 403, "error", page{Title: "Refused", Data: "The form's CSRF token is missing or wrong. Reload the page and try again."})
			return
		}
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	get, post := ctx.IsGet(), ctx.IsPost()
	switch {
	case get && path == "/":
		p.Title, p.Nav, p.Data = "Endpoints", "endpoints", a.opt.Engine.Endpoints()
		a.render(ctx, 200, "endpoints", p)
	case post && path == "/logout":
		ctx.Response.Header.DelClientCookie(cookieName)
		redirect(ctx, "/login", "Signed out.")
	case get && len(parts) == 2 && parts[0] == "endpoints":
		a.endpointPage(ctx, p, parts[1])
	case post && len(parts) == 3 && parts[0] == "endpoints":
		a.endpointAction(ctx, p, parts[1], parts[2])
	case get && len(parts) == 2 && parts[0] == "deliveries":
		a.deliveryPage(ctx, p, parts[1])
	case post && len(parts) == 3 && parts[0] == "deliveries" && parts[2] == "retry":
		_, err := a.opt.Engine.Retry(ctx, parts[1])
		switch {
		case errors.Is(err, store.ErrNotFound):
			a.notFound(ctx, p, "No delivery "+parts[1])
		case err != nil:
			redirect(ctx, "/deliveries/"+parts[1], "Not retried: "+strings.TrimPrefix(err.Error(), "conflict: "))
		default:
			redirect(ctx, "/deliveries/"+parts[1], "Retry queued.")
		}
	case get && path == "/calls":
		cs, err := a.opt.Store.Calls(ctx, store.CallFilter{Limit: 100})
		if err != nil {
			a.internal(ctx, "list calls", err)
			return
		}
		p.Title, p.Nav, p.Data = "Calls", "calls", cs
		a.render(ctx, 200, "calls", p)
	case get && len(parts) == 2 && parts[0] == "calls":
		id, _ := strconv.ParseInt(parts[1], 10, 64)
		c, err := a.opt.Store.CallByID(ctx, id)
		if err != nil {
			a.notFound(ctx, p, "No call "+parts[1])
			return
		}
		p.Title, p.Nav, p.Data = fmt.Sprintf("Call #%d", c.ID), "calls", map[string]any{"C": c}
		a.render(ctx, 200, "call", p)
	case post && len(parts) == 3 && parts[0] == "calls" && parts[2] == "qualify":
		a.qualifyForm(ctx, parts[1])
	case get && path == "/backup":
		a.backup(ctx)
	case get && path == "/calls.csv":
		a.callsCSV(ctx)
	case get && path == "/tracker" && a.opt.Tracker != nil:
		p.Title, p.Nav, p.Data = "Tracker", "tracker", a.trackerView()
		a.render(ctx, 200, "tracker", p)
	default:
		a.notFound(ctx, p, "No such page.")
	}
}

func (a *API) notFound(ctx *fasthttp.RequestCtx, p page, msg string) {
	p.Title, p.Data = "Not found", msg
	a.render(ctx, 404, "error", p)
}

func (a *API) login(ctx *fasthttp.RequestCtx) {
	p := page{Title: "Sign in", Flash: string(ctx.QueryArgs().Peek("msg"))}
	if ctx.IsGet() {
		a.render(ctx, 200, "login", p)
		return
	}
	want := a.opt.Config().Server.Admin.Token
	got := string(ctx.PostArgs().Peek("token"))
	if want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		time.Sleep(200 * time.Millisecond) // slow down guessing
		a.opt.Logger.Warn("dashboard sign-in refused: wrong token", "remote", ctx.RemoteIP().String())
		p.Flash, p.FlashError = "Wrong admin token.", true
		a.render(ctx, 401, "login", p)
		return
	}
	var c fasthttp.Cookie
	c.SetKey(cookieName)
	c.SetValue(a.newSession(time.Now()))
	c.SetPath("/")
	c.SetHTTPOnly(true)
	c.SetSameSite(fasthttp.CookieSameSiteStrictMode)
	c.SetMaxAge(int(sessionTTL.Seconds()))
	if ctx.IsTLS() || string(ctx.Request.Header.Peek("X-Forwarded-Proto")) == "https" {
		c.SetSecure(true)
	}
	ctx.Response.Header.SetCookie(&c)
	redirect(ctx, "/", "")
}

func (a *API) endpointPage(ctx *fasthttp.RequestCtx, p page, id string) {
	v, ok := a.opt.Engine.Endpoint(id)
	if !ok {
		a.notFound(ctx, p, "No endpoint "+id)
		return
	}
	ds, err := a.opt.Store.Deliveries(ctx, store.DeliveryFilter{EndpointID: id, Limit: 50})
	if err != nil {
		a.internal(ctx, "list deliveries", err)
		return
	}
	p.Title, p.Nav, p.Live = v.Config.Name, "endpoints", true
	p.Data = map[string]any{"View": v, "Deliveries": ds, "Threshold": a.opt.Config().Delivery.BreakerThreshold}
	a.render(ctx, 200, "endpoint", p)
}

func (a *API) endpointAction(ctx *fasthttp.RequestCtx, p page, id, action string) {
	back := "/endpoints/" + id
	switch action {
	case "test":
		did, err := a.opt.Engine.SendTest(ctx, id, string(ctx.PostArgs().Peek("event")))
		switch {
		case errors.Is(err, delivery.ErrUnknownEndpoint):
			a.notFound(ctx, p, "No endpoint "+id)
		case err != nil:
			redirect(ctx, back, "Not sent: "+err.Error())
		default:
			redirect(ctx, back, "Test delivery "+did+" queued.")
		}
	case "enable":
		n, err := a.opt.Engine.Enable(ctx, id)
		if err != nil {
			a.internal(ctx, "enable endpoint", err)
			return
		}
		redirect(ctx, back, fmt.Sprintf("Re-enabled; %d held deliveries released.", n))
	case "retry-failed":
		n, err := a.opt.Engine.RetryFailed(ctx, id, maxRetryFailed)
		if err != nil {
			a.internal(ctx, "retry failed deliveries", err)
			return
		}
		redirect(ctx, back, fmt.Sprintf("%d failed deliveries queued for one more attempt.", n))
	case "rotate-secret":
		secret, err := a.opt.Engine.RotateSecret(ctx, id)
		if err != nil {
			a.internal(ctx, "rotate secret", err)
			return
		}
		p.Title, p.Nav, p.Data = "New secret", "endpoints", map[string]string{"ID": id, "Secret": secret}
		a.render(ctx, 200, "secret", p)
	default:
		a.notFound(ctx, p, "No such action.")
	}
}

func (a *API) deliveryPage(ctx *fasthttp.RequestCtx, p page, id string) {
	d, as, err := a.opt.Store.Delivery(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		a.notFound(ctx, p, "No delivery "+id)
		return
	}
	if err != nil {
		a.internal(ctx, "get delivery", err)
		return
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, d.Payload, "", "  ") != nil {
		pretty.Write(d.Payload)
	}
	p.Title, p.Nav, p.Live = "Delivery "+id, "endpoints", !d.Status.Final()
	p.Data = map[string]any{"D": d, "Attempts": as, "Payload": pretty.String()}
	a.render(ctx, 200, "delivery", p)
}

func (a *API) qualifyForm(ctx *fasthttp.RequestCtx, raw string) {
	id, _ := strconv.ParseInt(raw, 10, 64)
	f := ctx.PostArgs()
	q := calls.Qualification{LeadStatus: string(f.Peek("lead_status")), QualificationReason: string(f.Peek("qualification_reason"))}
	num := func(name string) (*float64, error) {
		v := strings.TrimSpace(string(f.Peek(name)))
		if v == "" {
			return nil, nil
		}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("%s must be a number", name)
		}
		return &x, nil
	}
	var err error
	if q.QualificationConfidence, err = num("qualification_confidence"); err == nil {
		q.DealValue, err = num("deal_value")
	}
	for _, t := range strings.Split(string(f.Peek("tags")), ",") {
		if t = strings.TrimSpace(t); t != "" {
			q.Tags = append(q.Tags, t)
		}
	}
	if err == nil {
		_, err = a.opt.Calls.Qualify(ctx, id, q)
	}
	back := "/calls/" + raw
	switch {
	case errors.Is(err, store.ErrNotFound):
		redirect(ctx, "/calls", "No call "+raw)
	case err != nil && !errors.Is(err, calls.ErrBadRequest) && !strings.Contains(err.Error(), "must be"):
		a.internal(ctx, "qualify", err)
	case err != nil:
		redirect(ctx, back, "Not qualified: "+strings.TrimPrefix(err.Error(), "bad request: "))
	default:
		redirect(ctx, back, "Lead qualified; lead.qualified sent.")
	}
}

// poolView is one campaign's number pool on the tracker page and in GET /api/v1/tracker.
type poolView struct {
	CampaignID int64  `json:"campaign_id"`
	Campaign   string `json:"campaign"`
	Size       int    `json:"size"`
	Held       int    `json:"held"`
	Free       int    `json:"free"`
	Reuses     int64  `json:"taken_over"`
}

// trackerView is what the tracker page shows: the session counters since start and each pool.
type trackerView struct {
	S     sessions.Stats
	Pools []poolView
}

func (a *API) trackerView() trackerView {
	st := a.opt.Tracker()
	cfg := a.opt.Config()
	v := trackerView{S: st, Pools: []poolView{}}
	for _, p := range st.Pools {
		name := fmt.Sprint("campaign ", p.CampaignID)
		for _, ws := range cfg.Workspaces {
			if cp := ws.Campaign(p.CampaignID); cp != nil {
				name = cp.Name
				break
			}
		}
		v.Pools = append(v.Pools, poolView{CampaignID: p.CampaignID, Campaign: name, Size: p.Size, Held: p.Held, Free: p.Size - p.Held, Reuses: p.Reuses})
	}
	return v
}

// Package admin is the operator's window on the admin listener: the REST API for endpoints,
// deliveries, calls and reloads behind a bearer token, the web dashboard, and /metrics.
package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ringgate/ringgate/gateway/calls"
	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/delivery"
	"github.com/ringgate/ringgate/gateway/events"
	"github.com/ringgate/ringgate/gateway/httpx"
	"github.com/ringgate/ringgate/gateway/sessions"
	"github.com/ringgate/ringgate/gateway/store"
	"github.com/valyala/fasthttp"
)

// Options are what the API serves from.
type Options struct {
	Engine  *delivery.Engine
	Calls   *calls.Service
	Store   store.Store
	Logger  *slog.Logger
	Version string
	Config  func() *config.Config
	Reload  func(ctx context.Context) error
	// Metrics serves /metrics (nil: not served).
	Metrics fasthttp.RequestHandler
	// Tracker reports the website tracker's sessions and number pools (nil: no tracker page).
	Tracker func() sessions.Stats
}

// API is the admin listener's handler.
type API struct{ opt Options }

// New returns the admin API.
func New(opt Options) *API { return &API{opt: opt} }

// maxBody caps admin request bodies.
const maxBody = 64 << 10

// Handler routes the admin listener: the REST API (Bearer token), /metrics, and the dashboard
// (a signed-in cookie or the Bearer token; CSRF-checked actions).
func (a *API) Handler() fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		path := string(ctx.Path())
		if len(ctx.PostBody()) > maxBody {
			httpx.Error(ctx, fasthttp.StatusRequestEntityTooLarge, "too_large", "request body is over 64 KiB")
			return
		}
		switch {
		case strings.HasPrefix(path, "/static/"):
			a.static(ctx, strings.TrimPrefix(path, "/static/"))
		case path == "/metrics":
			_, _, signed := a.signedIn(ctx)
			if a.opt.Metrics == nil || (!signed && !a.opt.Config().Server.Admin.MetricsPublic) {
				a.unauthorized(ctx)
				return
			}
			a.opt.Metrics(ctx)
		case strings.HasPrefix(path, "/api/"):
			if !a.bearer(ctx) {
				a.unauthorized(ctx)
				return
			}
			a.route(ctx, path)
		default:
			a.dashboard(ctx, path)
		}
	}
}

func (a *API) unauthorized(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="ringgate"`)
	httpx.Error(ctx, fasthttp.StatusUnauthorized, "unauthorized", "a valid admin token is required (Authorization: Bearer <server.admin.token>)")
}

func (a *API) route(ctx *fasthttp.RequestCtx, path string) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	method := string(ctx.Method())
	is := func(m string, n int, prefix ...string) bool {
		if method != m || len(parts) != n {
			return false
		}
		for i, p := range prefix {
			if p != "*" && parts[i] != p {
				return false
			}
		}
		return true
	}
	switch {
	case is("GET", 3, "api", "v1", "endpoints"):
		a.listEndpoints(ctx)
	case is("GET", 4, "api", "v1", "endpoints"):
		a.getEndpoint(ctx, parts[3])
	case is("POST", 5, "api", "v1", "endpoints", "*", "test"):
		a.sendTest(ctx, parts[3])
	case is("POST", 5, "api", "v1", "endpoints", "*", "enable"):
		a.enable(ctx, parts[3])
	case is("POST", 5, "api", "v1", "endpoints", "*", "rotate-secret"):
		a.rotate(ctx, parts[3])
	case is("POST", 5, "api", "v1", "endpoints", "*", "retry-failed"):
		a.retryFailed(ctx, parts[3])
	case is("GET", 3, "api", "v1", "deliveries"):
		a.listDeliveries(ctx)
	case is("GET", 4, "api", "v1", "deliveries"):
		a.getDelivery(ctx, parts[3])
	case is("POST", 5, "api", "v1", "deliveries", "*", "retry"):
		a.retry(ctx, parts[3])
	case is("GET", 3, "api", "v1", "calls"):
		a.listCalls(ctx)
	case is("GET", 3, "api", "v1", "calls.csv"):
		a.callsCSV(ctx)
	case is("GET", 4, "api", "v1", "calls"):
		a.getCall(ctx, parts[3])
	case is("POST", 5, "api", "v1", "calls", "*", "qualify"):
		a.qualify(ctx, parts[3])
	case is("POST", 3, "api", "v1", "reload"):
		a.reload(ctx)
	case is("GET", 3, "api", "v1", "backup"):
		a.backup(ctx)
	case is("GET", 3, "api", "v1", "tracker") && a.opt.Tracker != nil:
		v := a.trackerView()
		httpx.JSON(ctx, 200, map[string]any{
			"sessions": map[string]int64{"started": v.S.Created, "heartbeats": v.S.Refreshed, "crawlers": v.S.Crawlers, "refused": v.S.Limited},
			"pools":    v.Pools,
		})
	default:
		httpx.Error(ctx, fasthttp.StatusNotFound, "not_found", "no such route")
	}
}

// endpointJSON is an endpoint as the API shows it: config and state, never the secret.
type endpointJSON struct {
	ID                  string            `json:"id"`
	Name                string            `json:"name"`
	URL                 string            `json:"url"`
	WorkspaceID         int64             `json:"workspace_id"`
	Events              []string          `json:"events"`
	Headers             map[string]string `json:"headers,omitempty"`
	Transform           *string           `json:"transform"`
	Enabled             bool              `json:"enabled"`
	ConsecutiveFailures int               `json:"consecutive_failures"`
	DisabledAt          *time.Time        `json:"disabled_at"`
}

func toJSON(v delivery.EndpointView) endpointJSON {
	out := endpointJSON{
		ID: v.Config.ID, Name: v.Config.Name, URL: v.Config.URL, WorkspaceID: v.WorkspaceID,
		Events: v.Config.Events, Headers: v.Config.Headers, Enabled: v.State.Enabled,
		ConsecutiveFailures: v.State.ConsecutiveFailures,
	}
	if v.Config.Transform != nil {
		out.Transform = &v.Config.Transform.Module
	}
	if !v.State.DisabledAt.IsZero() {
		t := v.State.DisabledAt
		out.DisabledAt = &t
	}
	return out
}

func (a *API) listEndpoints(ctx *fasthttp.RequestCtx) {
	views := a.opt.Engine.Endpoints()
	out := make([]endpointJSON, len(views))
	for i, v := range views {
		out[i] = toJSON(v)
	}
	httpx.JSON(ctx, 200, map[string]any{"endpoints": out})
}

func (a *API) getEndpoint(ctx *fasthttp.RequestCtx, id string) {
	v, ok := a.opt.Engine.Endpoint(id)
	if !ok {
		httpx.Error(ctx, 404, "not_found", "no endpoint "+strconv.Quote(id))
		return
	}
	httpx.JSON(ctx, 200, toJSON(v))
}

func (a *API) sendTest(ctx *fasthttp.RequestCtx, id string) {
	var req struct {
		Event string `json:"event"`
	}
	if err := decodeStrict(ctx.PostBody(), &req); err != nil || req.Event == "" {
		httpx.Error(ctx, 400, "bad_request", `body must be {"event": "<event type>"}`)
		return
	}
	did, err := a.opt.Engine.SendTest(ctx, id, req.Event)
	switch {
	case errors.Is(err, delivery.ErrUnknownEndpoint):
		httpx.Error(ctx, 404, "not_found", "no endpoint "+strconv.Quote(id))
	case errors.Is(err, delivery.ErrNotSubscribed):
		httpx.Error(ctx, 400, "not_subscribed", err.Error())
	case err != nil:
		a.internal(ctx, "send test", err)
	default:
		httpx.JSON(ctx, 202, map[string]string{"delivery_id": did})
	}
}

func (a *API) enable(ctx *fasthttp.RequestCtx, id string) {
	n, err := a.opt.Engine.Enable(ctx, id)
	switch {
	case errors.Is(err, delivery.ErrUnknownEndpoint):
		httpx.Error(ctx, 404, "not_found", "no endpoint "+strconv.Quote(id))
	case err != nil:
		a.internal(ctx, "enable endpoint", err)
	default:
		httpx.JSON(ctx, 200, map[string]any{"enabled": true, "released": n})
	}
}

func (a *API) rotate(ctx *fasthttp.RequestCtx, id string) {
	secret, err := a.opt.Engine.RotateSecret(ctx, id)
	switch {
	case errors.Is(err, delivery.ErrUnknownEndpoint):
		httpx.Error(ctx, 404, "not_found", "no endpoint "+strconv.Quote(id))
	case err != nil:
		a.internal(ctx, "rotate secret", err)
	default:
		httpx.JSON(ctx, 200, map[string]any{"secret": secret, "previous_valid_for": delivery.RotationGrace.String()})
	}
}

// deliveryJSON is a delivery as the API shows it.
type deliveryJSON struct {
	store.Delivery
	Payload  json.RawMessage `json:"payload,omitempty"`
	Attempts []attemptJSON   `json:"attempt_log,omitempty"`
}

type attemptJSON struct {
	store.Attempt
	DurationMS float64 `json:"duration_ms"`
}

// maxRetryFailed bounds one retry-failed request; send it again for more.
const maxRetryFailed = 10000

func (a *API) retryFailed(ctx *fasthttp.RequestCtx, id string) {
	var req struct {
		Limit int `json:"limit"`
	}
	if body := ctx.PostBody(); len(bytes.TrimSpace(body)) > 0 {
		if err := decodeStrict(body, &req); err != nil || req.Limit < 0 {
			httpx.Error(ctx, 400, "bad_request", `body is optional: {"limit": N}, N up to 10000`)
			return
		}
	}
	if req.Limit == 0 || req.Limit > maxRetryFailed {
		req.Limit = maxRetryFailed
	}
	n, err := a.opt.Engine.RetryFailed(ctx, id, req.Limit)
	switch {
	case errors.Is(err, delivery.ErrUnknownEndpoint):
		httpx.Error(ctx, 404, "not_found", "no endpoint "+id)
	case err != nil:
		a.internal(ctx, "retry failed deliveries", err)
	default:
		httpx.JSON(ctx, 202, map[string]int{"queued": n})
	}
}

func (a *API) listDeliveries(ctx *fasthttp.RequestCtx) {
	q := ctx.QueryArgs()
	f := store.DeliveryFilter{
		EndpointID: string(q.Peek("endpoint")), Status: store.Status(q.Peek("status")),
		Event: string(q.Peek("event")), Cursor: string(q.Peek("cursor")),
	}
	if f.Status != "" && !f.Status.Valid() {
		httpx.Error(ctx, 400, "bad_request", "status must be one of pending, retrying, success, failed, held, filtered")
		return
	}
	if l := q.Peek("limit"); len(l) > 0 {
		n, err := strconv.Atoi(string(l))
		if err != nil || n < 1 || n > 500 {
			httpx.Error(ctx, 400, "bad_request", "limit must be between 1 and 500")
			return
		}
		f.Limit = n
	}
	ds, err := a.opt.Store.Deliveries(ctx, f)
	if err != nil {
		a.internal(ctx, "list deliveries", err)
		return
	}
	out := map[string]any{"deliveries": ds}
	if f.Limit == 0 {
		f.Limit = 50
	}
	if len(ds) == f.Limit {
		out["next_cursor"] = ds[len(ds)-1].ID
	}
	if ds == nil {
		out["deliveries"] = []store.Delivery{}
	}
	httpx.JSON(ctx, 200, out)
}

func (a *API) getDelivery(ctx *fasthttp.RequestCtx, id string) {
	d, as, err := a.opt.Store.Delivery(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		httpx.Error(ctx, 404, "not_found", "no delivery "+strconv.Quote(id))
		return
	}
	if err != nil {
		a.internal(ctx, "get delivery", err)
		return
	}
	out := deliveryJSON{Delivery: d, Payload: d.Payload}
	for _, at := range as {
		out.Attempts = append(out.Attempts, attemptJSON{Attempt: at, DurationMS: float64(at.Duration.Microseconds()) / 1000})
	}
	httpx.JSON(ctx, 200, out)
}

func (a *API) retry(ctx *fasthttp.RequestCtx, id string) {
	d, err := a.opt.Engine.Retry(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		httpx.Error(ctx, 404, "not_found", "no delivery "+strconv.Quote(id))
	case errors.Is(err, store.ErrConflict):
		httpx.Error(ctx, 409, "conflict", strings.TrimPrefix(err.Error(), "conflict: "))
	case err != nil:
		a.internal(ctx, "retry delivery", err)
	default:
		httpx.JSON(ctx, 202, map[string]any{"delivery_id": d.ID, "status": d.Status})
	}
}

func (a *API) reload(ctx *fasthttp.RequestCtx) {
	err := a.opt.Reload(ctx)
	var ce config.Errors
	switch {
	case errors.As(err, &ce):
		httpx.Error(ctx, 400, "invalid_config", ce.Error())
	case err != nil:
		a.internal(ctx, "reload", err)
	default:
		httpx.JSON(ctx, 200, map[string]any{"reloaded": true, "file": a.opt.Config().File})
	}
}

// callJSON is a call log with the payload base the events of the call carry.
type callJSON struct {
	store.CallLog
	Data events.CallData `json:"data"`
}

// callFilter reads workspace=, cursor= and limit= (1 to maxLimit; 0 when absent) of a call
// listing; on a bad value it answers 400 and reports false.
func callFilter(ctx *fasthttp.RequestCtx, maxLimit int) (store.CallFilter, bool) {
	q := ctx.QueryArgs()
	f := store.CallFilter{}
	for _, p := range []struct {
		name string
		dst  *int64
	}{{"workspace", &f.WorkspaceID}, {"cursor", &f.Cursor}} {
		if v := q.Peek(p.name); len(v) > 0 {
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil || n < 0 {
				httpx.Error(ctx, 400, "bad_request", p.name+" must be a whole number")
				return f, false
			}
			*p.dst = n
		}
	}
	if v := q.Peek("limit"); len(v) > 0 {
		n, err := strconv.Atoi(string(v))
		if err != nil || n < 1 || n > maxLimit {
			httpx.Error(ctx, 400, "bad_request", fmt.Sprintf("limit must be between 1 and %d", maxLimit))
			return f, false
		}
		f.Limit = n
	}
	return f, true
}

func (a *API) listCalls(ctx *fasthttp.RequestCtx) {
	f, ok := callFilter(ctx, 500)
	if !ok {
		return
	}
	cs, err := a.opt.Store.Calls(ctx, f)
	if err != nil {
		a.internal(ctx, "list calls", err)
		return
	}
	out := make([]callJSON, len(cs))
	for i := range cs {
		out[i] = callJSON{cs[i], calls.BaseData(&cs[i])}
	}
	body := map[string]any{"calls": out}
	if f.Limit == 0 {
		f.Limit = 50
	}
	if len(cs) == f.Limit {
		body["next_cursor"] = cs[len(cs)-1].ID
	}
	httpx.JSON(ctx, 200, body)
}

func (a *API) callID(ctx *fasthttp.RequestCtx, raw string) (int64, bool) {
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id < 1 {
		httpx.Error(ctx, 400, "bad_request", "call_log_id must be a positive whole number")
		return 0, false
	}
	return id, true
}

func (a *API) getCall(ctx *fasthttp.RequestCtx, raw string) {
	id, ok := a.callID(ctx, raw)
	if !ok {
		return
	}
	c, err := a.opt.Store.CallByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		httpx.Error(ctx, 404, "not_found", "no call "+raw)
		return
	}
	if err != nil {
		a.internal(ctx, "get call", err)
		return
	}
	httpx.JSON(ctx, 200, callJSON{c, calls.BaseData(&c)})
}

func (a *API) qualify(ctx *fasthttp.RequestCtx, raw string) {
	id, ok := a.callID(ctx, raw)
	if !ok {
		return
	}
	var q calls.Qualification
	if err := decodeStrict(ctx.PostBody(), &q); err != nil {
		httpx.Error(ctx, 400, "bad_request", "body must be JSON with lead_status, qualification_reason, qualification_confidence, deal_value, tags: "+err.Error())
		return
	}
	c, err := a.opt.Calls.Qualify(ctx, id, q)
	switch {
	case errors.Is(err, calls.ErrBadRequest):
		httpx.Error(ctx, 400, "bad_request", strings.TrimPrefix(err.Error(), "bad request: "))
	case errors.Is(err, store.ErrNotFound):
		httpx.Error(ctx, 404, "not_found", "no call "+raw)
	case err != nil:
		a.internal(ctx, "qualify", err)
	default:
		httpx.JSON(ctx, 200, callJSON{c, calls.BaseData(&c)})
	}
}

// backup streams a consistent copy of the store while the gateway runs; ringgate restore loads
// it into a new data directory. A copy cut short (the connection dropped, a store error) ends
// early, and restore refuses it.
func (a *API) backup(ctx *fasthttp.RequestCtx) {
	b, ok := a.opt.Store.(store.Backuper)
	if !ok {
		httpx.Error(ctx, fasthttp.StatusNotImplemented, "not_implemented",
			"this storage backend is backed up with its own tools (NATS JetStream: nats stream backup)")
		return
	}
	name := "ringgate-" + time.Now().UTC().Format("20060102-150405") + ".backup"
	ctx.SetContentType("application/octet-stream")
	ctx.Response.Header.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	conn, log := ctx.Conn(), a.opt.Logger
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		start := time.Now()
		n, err := b.Backup(context.Background(), deadlineWriter{w, conn})
		if err != nil {
			log.Error("admin: backup failed; the copy sent is incomplete", "err", err, "bytes", n)
			if conn != nil {
				conn.Close() // the client sees the response cut short, not a complete one
			}
			return
		}
		if err := w.Flush(); err != nil {
			log.Error("admin: backup not delivered", "err", err, "bytes", n)
			return
		}
		log.Info("admin: backup sent", "bytes", n, "took", time.Since(start).Round(time.Millisecond))
	})
}

// deadlineWriter gives each write of a backup a minute: the admin listener's write timeout
// covers a whole response, which a large backup can outlast.
type deadlineWriter struct {
	w    *bufio.Writer
	conn net.Conn
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	if d.conn != nil {
		d.conn.SetWriteDeadline(time.Now().Add(time.Minute))
	}
	return d.w.Write(p)
}

// internal logs the cause and tells the client only that it failed.
func (a *API) internal(ctx *fasthttp.RequestCtx, what string, err error) {
	a.opt.Logger.Error("admin: "+what, "path", string(ctx.Path()), "err", err)
	httpx.Error(ctx, 500, "internal", what+" failed; the gateway log has the cause")
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

package gateway

import (
	"strings"

	"github.com/ringgate/ringgate/gateway/httpx"
	"github.com/ringgate/ringgate/gateway/store"
	"github.com/valyala/fasthttp"
)

// Handler is the public listener's handler: Twilio callbacks, the tracker and health checks.
func (g *Gateway) Handler() fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		path := string(ctx.Path())
		if strings.HasPrefix(path, "/twilio/") {
			g.twilio.Serve(ctx)
			return
		}
		if g.track.Handler(ctx) {
			return
		}
		switch path {
		case "/healthz":
			ctx.SetContentType("text/plain; charset=utf-8")
			ctx.SetBodyString("ok\n")
		case "/readyz":
			g.mu.Lock()
			ready := g.started && !g.shutdown
			g.mu.Unlock()
			if !ready {
				httpx.Error(ctx, fasthttp.StatusServiceUnavailable, "not_ready", "the gateway is starting or stopping")
				return
			}
			if p, ok := g.store.(store.Pinger); ok {
				if err := p.Ping(ctx); err != nil {
					g.log.Warn("not ready: the store does not answer", "err", err)
					httpx.Error(ctx, fasthttp.StatusServiceUnavailable, "not_ready", "the store does not answer")
					return
				}
			}
			ctx.SetContentType("text/plain; charset=utf-8")
			ctx.SetBodyString("ready\n")
		default:
			httpx.Error(ctx, fasthttp.StatusNotFound, "not_found", "no such route")
		}
	}
}

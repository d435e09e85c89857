package gateway

import (
	"github.com/ringgate/ringgate/gateway/httpx"
	"github.com/valyala/fasthttp"
)

// Handler is the public listener's handler: health checks now; Twilio callbacks and the tracker
// routes mount here too.
func (g *Gateway) Handler() fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
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
			ctx.SetContentType("text/plain; charset=utf-8")
			ctx.SetBodyString("ready\n")
		default:
			httpx.Error(ctx, fasthttp.StatusNotFound, "not_found", "no such route")
		}
	}
}

// Package httpx holds the small HTTP helpers the listeners share: the JSON error shape
// {"error": {"code", "message"}}, JSON responses, recovering a handler's panic, and the client's
// address behind trusted proxies.
package httpx

import (
	"encoding/json"
	"log/slog"
	"runtime/debug"

	"github.com/valyala/fasthttp"
)

// Recover runs h and turns a panic in it into a 500 and a logged error with the stack: fasthttp
// does not recover a handler's panic, so one request could otherwise end the process.
func Recover(h fasthttp.RequestHandler, log *slog.Logger) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		defer func() {
			if p := recover(); p != nil {
				log.Error("request handler panicked", "method", string(ctx.Method()), "path", string(ctx.Path()),
					"panic", p, "stack", string(debug.Stack()))
				ctx.ResetBody()
				Error(ctx, fasthttp.StatusInternalServerError, "internal", "the request could not be handled")
			}
		}()
		h(ctx)
	}
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Error answers with status and the JSON error shape. message is what the client may see; log
// the cause separately.
func Error(ctx *fasthttp.RequestCtx, status int, code, message string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, message
	JSON(ctx, status, b)
}

// JSON answers with status and v as JSON.
func JSON(ctx *fasthttp.RequestCtx, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		ctx.SetStatusCode(fasthttp.StatusInternalServerError)
		ctx.SetBodyString(`{"error":{"code":"internal","message":"could not encode the response"}}`)
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(body, '\n'))
}

// Package httpx holds the small HTTP helpers both listeners share: the JSON error shape
// {"error": {"code", "message"}} and JSON responses.
package httpx

import (
	"encoding/json"

	"github.com/valyala/fasthttp"
)

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

package httpx

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// A panicking handler answers 500 with the JSON error, and the panic is logged with its stack.
func TestRecover(t *testing.T) {
	var logs bytes.Buffer
	h := Recover(func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyString("half written")
		panic("boom")
	}, slog.New(slog.NewTextHandler(&logs, nil)))
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/twilio/voice")
	h(&ctx)
	if ctx.Response.StatusCode() != 500 || !strings.Contains(string(ctx.Response.Body()), `"code":"internal"`) {
		t.Fatalf("%d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if l := logs.String(); !strings.Contains(l, "panic=boom") || !strings.Contains(l, "path=/twilio/voice") || !strings.Contains(l, "httpx_test.go") {
		t.Fatalf("log: %s", l)
	}
}

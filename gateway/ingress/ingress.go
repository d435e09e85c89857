// Package ingress speaks Twilio: it checks X-Twilio-Signature against the configured public URL,
// parses callback forms, hands them to the call lifecycle and answers TwiML. It knows nothing
// about endpoints or deliveries.
package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ringgate/ringgate/gateway/calls"
	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/httpx"
	"github.com/twilio/twilio-go/twiml"
	"github.com/valyala/fasthttp"
)

// maxForm caps a callback's body; Twilio's are a few KiB.
const maxForm = 64 << 10

// Observer is told about every callback, for metrics.
type Observer interface {
	Callback(route, result string, d time.Duration)
}

// Options build a Handler.
type Options struct {
	Calls    *calls.Service
	Config   func() *config.Config
	Logger   *slog.Logger
	Observer Observer // optional
}

// Handler serves the /twilio/ routes.
type Handler struct{ opt Options }

// New returns a Handler.
func New(opt Options) *Handler {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	return &Handler{opt: opt}
}

// Routes are the callback paths, for the router.
var Routes = []string{"/twilio/voice", "/twilio/dial", "/twilio/status", "/twilio/recording", "/twilio/voicemail", "/twilio/transcription", "/twilio/intelligence"}

// Serve handles one callback. The RequestCtx and its bytes are not kept past the return: the
// form is copied into strings first.
func (h *Handler) Serve(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	route := string(ctx.Path())
	name, known := routeName(route)
	result := "not_found"
	if known {
		result = h.serve(ctx, route)
	} else {
		ctx.Error("not found\n", fasthttp.StatusNotFound)
	}
	took := time.Since(start)
	if h.opt.Observer != nil {
		h.opt.Observer.Callback(name, result, took)
	}
	if h.opt.Logger.Enabled(context.Background(), slog.LevelInfo) {
		sid := string(ctx.PostArgs().Peek("CallSid"))
		h.opt.Logger.Info("twilio callback", "trace", sid, "route", route, "result", result,
			"status", ctx.Response.StatusCode(), "duration", took)
	}
}

// sidFields name Twilio resources: the call log keys and remembers them. Twilio's SIDs are two
// letters and 32 hex digits; one with other bytes is refused, invalid UTF-8 above all, which a
// call log stored as JSON would not give back as sent.
var sidFields = []string{"CallSid", "RecordingSid", "TranscriptionSid", "DialCallSid", "ParentCallSid"}

func checkSIDs(form url.Values) error {
	for _, k := range sidFields {
		for _, v := range form[k] {
			if len(v) > 64 || strings.IndexFunc(v, func(r rune) bool {
				return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
			}) >= 0 {
				return fmt.Errorf("%w: %s must be letters and digits (at most 64)", calls.ErrBadRequest, k)
			}
		}
	}
	return nil
}

// routeName is a route's name for metrics: one of Routes without "/twilio/", or "other" for
// any other path. Never the path itself, which anyone may send: a label that is not UTF-8
// panics the metrics registry (the whole process with it), and each new path would be a new
// series.
func routeName(path string) (name string, known bool) {
	for _, r := range Routes {
		if path == r {
			return r[len("/twilio/"):], true
		}
	}
	return "other", false
}

func (h *Handler) serve(ctx *fasthttp.RequestCtx, route string) string {
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		ctx.Error("method not allowed\n", fasthttp.StatusMethodNotAllowed)
		return "bad_method"
	}
	if len(ctx.PostBody()) > maxForm {
		ctx.Error("body too large\n", fasthttp.StatusRequestEntityTooLarge)
		return "too_large"
	}
	cfg := h.opt.Config()
	signed := SignedURL(cfg.Server.PublicURL, string(ctx.Path()), string(ctx.URI().QueryString()))
	sig := string(ctx.Request.Header.Peek("X-Twilio-Signature"))
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // well inside Twilio's 15 s
	defer cancel()

	if route == "/twilio/intelligence" {
		body := append([]byte(nil), ctx.PostBody()...)
		if sig == "" || !ValidBody(cfg.Twilio.AuthToken, signed, body, sig) {
			return h.forbidden(ctx, cfg, route, sig, func(u string) bool { return ValidBody(cfg.Twilio.AuthToken, u, body, sig) })
		}
		var cb struct {
			TranscriptSID string `json:"transcript_sid"`
			CustomerKey   string `json:"customer_key"`
		}
		if err := json.Unmarshal(body, &cb); err != nil {
			ctx.Error("malformed JSON\n", fasthttp.StatusBadRequest)
			return "bad_request"
		}
		return h.finish(ctx, route, h.opt.Calls.TranscriptReady(cctx, cb.TranscriptSID, cb.CustomerKey), nil)
	}

	if !strings.HasPrefix(string(ctx.Request.Header.ContentType()), "application/x-www-form-urlencoded") {
		ctx.Error("expected a form\n", fasthttp.StatusUnsupportedMediaType)
		return "bad_request"
	}
	form := url.Values{}
	for k, v := range ctx.PostArgs().All() {
		form.Add(string(k), string(v))
	}
	if sig == "" || !Valid(cfg.Twilio.AuthToken, signed, form, sig) {
		return h.forbidden(ctx, cfg, route, sig, func(u string) bool { return Valid(cfg.Twilio.AuthToken, u, form, sig) })
	}
	if err := checkSIDs(form); err != nil {
		return h.finish(ctx, route, err, nil)
	}
	f := calls.Form(form)
	c := h.opt.Calls
	switch route {
	case "/twilio/voice":
		d, err := c.Incoming(cctx, f)
		return h.finish(ctx, route, err, &d)
	case "/twilio/dial":
		d, err := c.DialEnded(cctx, f)
		return h.finish(ctx, route, err, &d)
	case "/twilio/voicemail":
		d, err := c.VoicemailLeft(cctx, f)
		return h.finish(ctx, route, err, &d)
	case "/twilio/status":
		return h.finish(ctx, route, c.Status(cctx, f), nil)
	case "/twilio/recording":
		return h.finish(ctx, route, c.Recording(cctx, f), nil)
	case "/twilio/transcription":
		return h.finish(ctx, route, c.VoicemailTranscribed(cctx, f), nil)
	}
	ctx.Error("not found\n", fasthttp.StatusNotFound)
	return "not_found"
}

// forbidden refuses a callback whose signature does not match server.public_url. When it does
// match the URL the request reached (its Host, or the X-Forwarded-Host and -Proto a proxy sent),
// the log says so: a public_url that differs from what Twilio calls is the usual cause.
func (h *Handler) forbidden(ctx *fasthttp.RequestCtx, cfg *config.Config, route, sig string, validFor func(url string) bool) string {
	args := []any{"route", route, "remote", httpx.ClientAddr(ctx, cfg.Server.TrustedPrefixes()).String(), "signature_present", sig != ""}
	if sig != "" {
		if base := reachedURL(ctx, validFor); base != "" {
			args = append(args, "hint", "the signature is good for "+base+": set server.public_url to the URL Twilio calls (it is "+cfg.Server.PublicURL+")")
		}
	}
	h.opt.Logger.Warn("twilio callback refused: bad signature", args...)
	ctx.Error("invalid X-Twilio-Signature\n", fasthttp.StatusForbidden)
	return "forbidden"
}

// reachedURL returns the base URL (scheme and host) the request reached that its signature is
// good for, or "".
func reachedURL(ctx *fasthttp.RequestCtx, validFor func(url string) bool) string {
	host := string(ctx.Request.Header.Peek("X-Forwarded-Host"))
	if host == "" {
		host = string(ctx.Host())
	}
	if host == "" || strings.ContainsAny(host, "/ ,") {
		return ""
	}
	schemes := []string{"https", "http"}
	if p := string(ctx.Request.Header.Peek("X-Forwarded-Proto")); p == "http" {
		schemes = []string{"http", "https"}
	}
	for _, sc := range schemes {
		base := sc + "://" + host
		if validFor(SignedURL(base, string(ctx.Path()), string(ctx.URI().QueryString()))) {
			return base
		}
	}
	return ""
}

// finish answers a handled callback: TwiML for a decision, 204 otherwise. Only a failure to make
// the callback durable answers 5xx, so that Twilio retries.
func (h *Handler) finish(ctx *fasthttp.RequestCtx, route string, err error, d *calls.Decision) string {
	switch {
	case errors.Is(err, calls.ErrBadRequest):
		h.opt.Logger.Warn("twilio callback refused", "route", route, "err", err)
		ctx.Error(err.Error()+"\n", fasthttp.StatusBadRequest)
		return "bad_request"
	case errors.Is(err, calls.ErrUnknownCall):
		h.opt.Logger.Warn("callback for an unknown call", "route", route, "err", err)
		if d != nil {
			d = &calls.Decision{Kind: calls.Hangup}
		}
		err = nil
	case err != nil:
		h.opt.Logger.Error("twilio callback failed; Twilio will retry", "route", route, "err", err)
		ctx.Error("temporarily unavailable\n", fasthttp.StatusServiceUnavailable)
		return "error"
	}
	if d == nil {
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return "ok"
	}
	xml, err := h.twiml(*d)
	if err != nil {
		h.opt.Logger.Error("render TwiML", "route", route, "err", err)
		ctx.Error("cannot render TwiML\n", fasthttp.StatusInternalServerError)
		return "error"
	}
	ctx.SetContentType("text/xml; charset=utf-8")
	ctx.SetBodyString(xml)
	return "ok"
}

// twiml renders a decision with callback URLs under the public URL.
func (h *Handler) twiml(d calls.Decision) (string, error) {
	base := strings.TrimRight(h.opt.Config().Server.PublicURL, "/")
	var verbs []twiml.Element
	switch d.Kind {
	case calls.Dial:
		dial := twiml.VoiceDial{
			Action:        base + "/twilio/dial",
			Timeout:       strconv.Itoa(int(d.DialTimeout.Seconds())),
			InnerElements: []twiml.Element{twiml.VoiceNumber{PhoneNumber: d.ForwardTo}},
		}
		if d.Record {
			dial.Record = "record-from-answer-dual"
			dial.RecordingStatusCallback = base + "/twilio/recording"
			dial.RecordingStatusCallbackEvent = "completed"
		}
		verbs = append(verbs, dial)
	case calls.Reject:
		verbs = append(verbs, twiml.VoiceReject{Reason: "rejected"})
	case calls.NotInService:
		verbs = append(verbs, twiml.VoiceSay{Message: "The number you have called is not in service."}, twiml.VoiceHangup{})
	case calls.Voicemail:
		rec := twiml.VoiceRecord{
			Action: base + "/twilio/voicemail", MaxLength: "120", PlayBeep: "true", Trim: "trim-silence",
		}
		if d.Transcribe {
			rec.Transcribe, rec.TranscribeCallback = "true", base+"/twilio/transcription"
		}
		verbs = append(verbs,
			twiml.VoiceSay{Message: "Sorry, nobody is available to take your call. Please leave a message after the tone."},
			rec, twiml.VoiceHangup{})
	default:
		verbs = append(verbs, twiml.VoiceHangup{})
	}
	return twiml.Voice(verbs)
}

package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/store"
	"github.com/valyala/fasthttp"
)

// ResponseCap is how much of a receiver's response is kept with an attempt.
const ResponseCap = 4 << 10

var errTruncated = errors.New("response body truncated")

var respBufs = sync.Pool{New: func() any { b := make([]byte, ResponseCap+1); return &b }}

// clientTimeout is the longest attempt of any endpoint: the client's own read and write
// timeouts must not cut an attempt that its endpoint gives longer (each request has its own).
func clientTimeout(cfg *config.Config) time.Duration {
	t := cfg.Delivery.Timeout
	for _, ws := range cfg.Workspaces {
		for i := range ws.Endpoints {
			t = max(t, ws.Endpoints[i].AttemptTimeout(cfg.Delivery))
		}
	}
	return t
}

// newClient builds the client attempts share; timeout is clientTimeout(cfg).
func newClient(cfg *config.Config, opt Options, timeout time.Duration) *fasthttp.Client {
	d := &Dialer{Resolver: opt.Resolver, AllowPrivate: cfg.Delivery.AllowPrivateNetworks}
	return &fasthttp.Client{
		Name:                     "ringgate/" + opt.Version,
		DialTimeout:              d.Dial,
		ReadTimeout:              timeout,
		WriteTimeout:             timeout,
		MaxConnWaitTimeout:       timeout,
		MaxConnsPerHost:          cfg.Delivery.MaxInFlight * 2,
		MaxIdleConnDuration:      30 * time.Second,
		MaxResponseBodySize:      ResponseCap,
		StreamResponseBody:       true,
		DisablePathNormalizing:   true,
		NoDefaultUserAgentHeader: true,
	}
}

// result is what one HTTP exchange came to.
type result struct {
	code       int
	err        error
	response   string
	retryAfter time.Duration
	dur        time.Duration
}

// attempt makes one attempt of d and records its outcome; sent is called as soon as the HTTP
// exchange is over. It reports whether the outcome was committed (false: d is still queued as
// it was).
func (e *Engine) attempt(d store.Delivery, sent func()) bool {
	ctx := context.Background()
	ep := e.endpoint(d.EndpointID)
	now := e.clock.Now()
	if ep == nil {
		return e.finish(ctx, d, now, result{err: Permanent(errors.New("endpoint is no longer in the config"))}, store.Failed, "")
	}
	if !ep.state.Load().Enabled {
		if err := e.store.Hold(ctx, d.ID, now); err != nil && !errors.Is(err, store.ErrConflict) {
			e.log.Error("hold delivery", "delivery", d.ID, "err", err)
			return false
		}
		return true
	}
	body := d.Payload
	var extra [][2]string
	var logs string
	var recycle []byte // a transform's body, handed back once sent
	if e.opt.Transform != nil && ep.cfg.Transform != nil {
		meta := TransformMeta{Event: d.Event, EndpointID: d.EndpointID, EndpointURL: ep.cfg.URL, DeliveryID: d.ID, WorkspaceID: d.WorkspaceID, Attempt: d.Attempts + 1}
		tr, err := e.opt.Transform.Transform(ctx, ep.cfg, meta, body)
		logs = tr.Logs
		switch {
		case err != nil:
			return e.finish(ctx, d, now, result{err: Permanent(err)}, store.Failed, logs)
		case tr.Drop:
			return e.finish(ctx, d, now, result{}, store.Filtered, logs)
		}
		if tr.Body != nil {
			body, recycle = tr.Body, tr.Body
		}
		extra = tr.Headers
	}
	r := e.send(ep, d, body, extra, now)
	sent()
	if rc, ok := e.opt.Transform.(Recycler); ok && recycle != nil {
		rc.Recycle(recycle) // send is over: fasthttp keeps no reference to the body
	}
	status := store.Failed
	if r.err == nil && r.code >= 200 && r.code < 300 {
		status = store.Success
	}
	return e.finish(ctx, d, now, r, status, logs)
}

// send POSTs body to the endpoint with every header the contract lists.
func (e *Engine) send(ep *endpoint, d store.Delivery, body []byte, extra [][2]string, now time.Time) result {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(ep.cfg.URL)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.SetUserAgent("ringgate/" + e.opt.Version)
	for k, v := range ep.cfg.Headers {
		req.Header.Set(k, v)
	}
	for _, h := range extra {
		if !config.ReservedHeader(h[0]) {
			req.Header.Set(h[0], h[1])
		}
	}
	signer := ep.signerAt(now)
	ts := now.Unix()
	req.Header.Set("Signature", signer.Signature(body))
	req.Header.Set("webhook-id", d.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", signer.WebhookSignature(d.ID, ts, body))
	req.SetBodyRaw(body)

	timeout := ep.cfg.AttemptTimeout(e.cfg.Load().Delivery)
	start := time.Now()
	err := e.client.Load().DoTimeout(req, resp, timeout)
	r := result{}
	if err != nil {
		r.err = describe(err, timeout)
		r.dur = time.Since(start)
		return r
	}
	r.code = resp.StatusCode()
	r.response, r.err = readCapped(resp)
	r.dur = time.Since(start)
	if r.err != nil && r.code >= 200 && r.code < 300 {
		r.err = nil // the receiver said yes; a broken body after that does not change it
	}
	if r.err == nil {
		switch {
		case r.code >= 300 && r.code < 400:
			r.err = fmt.Errorf("redirect to %q not followed", resp.Header.Peek("Location"))
		case r.code >= 400:
			r.err = fmt.Errorf("HTTP %d", r.code)
		}
	}
	if v := resp.Header.Peek("Retry-After"); len(v) > 0 && r.code >= 400 {
		r.retryAfter = parseRetryAfter(string(v), now)
	}
	return r
}

// readCapped keeps the first ResponseCap bytes of the response and drops the connection when
// there was more, so a huge body costs nothing.
func readCapped(resp *fasthttp.Response) (string, error) {
	stream := resp.BodyStream()
	if stream == nil {
		b := resp.Body()
		return string(b[:min(len(b), ResponseCap)]), nil
	}
	bp := respBufs.Get().(*[]byte)
	defer respBufs.Put(bp)
	buf := *bp
	n, err := io.ReadFull(stream, buf)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = nil
	}
	if n > ResponseCap {
		n = ResponseCap
		if c, ok := stream.(fasthttp.ReadCloserWithError); ok {
			c.CloseWithError(errTruncated)
		} else {
			resp.CloseBodyStream()
		}
		return string(buf[:n]), nil
	}
	resp.CloseBodyStream()
	return string(buf[:n]), err
}

func describe(err error, timeout time.Duration) error {
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout):
		return fmt.Errorf("timed out after %s", timeout)
	case errors.Is(err, ErrForbiddenAddress):
		return err
	case errors.Is(err, fasthttp.ErrConnectionClosed):
		return errors.New("connection closed by the receiver before a response")
	}
	return err
}

// parseRetryAfter reads seconds or an HTTP date; 0 when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(min(s, 1<<31)) * time.Second // more than any cap; no overflow
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// decide turns an attempt's result into the delivery's next state.
func (e *Engine) decide(d store.Delivery, r result, status store.Status, logs string, now time.Time) store.Outcome {
	dc := e.cfg.Load().Delivery
	d.Attempts++
	d.LastStatus = r.code
	d.LastError = ""
	if r.err != nil {
		d.LastError = r.err.Error()
	}
	o := store.Outcome{
		Attempt:   store.Attempt{N: d.Attempts, At: now, StatusCode: r.code, Duration: r.dur, Error: d.LastError, Response: r.response, Logs: logs},
		Threshold: dc.BreakerThreshold, Now: now,
	}
	retries := d.Attempts - 1 // attempts after the first
	switch {
	case status == store.Success:
		d.Status = store.Success
		o.Breaker = store.BreakerSuccess
	case status == store.Filtered:
		d.Status = store.Filtered
	case status == store.Failed && isPermanent(r.err):
		d.Status = store.Failed
	case d.Manual || retries >= len(dc.RetrySchedule):
		d.Status = store.Failed
		if !d.Manual {
			o.Breaker = store.BreakerFailure
		}
	default:
		delay := dc.RetrySchedule[retries]
		if dc.RetryJitter > 0 {
			delay = time.Duration(float64(delay) * (1 + dc.RetryJitter*(2*e.opt.Jitter()-1)))
		}
		if r.retryAfter > delay {
			delay = min(r.retryAfter, dc.MaxRetryAfter)
		}
		d.Status = store.Retrying
		d.NextAt = now.Add(delay)
	}
	o.Delivery = d
	return o
}

// permanentError marks failures no retry can fix (a transform's error).
type permanentError struct{ error }

func (p permanentError) Unwrap() error { return p.error }

// Permanent wraps err so the delivery fails at once without retries.
func Permanent(err error) error { return permanentError{err} }

func isPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

func (e *Engine) finish(ctx context.Context, d store.Delivery, now time.Time, r result, status store.Status, logs string) bool {
	o := e.decide(d, r, status, logs, now)
	o.Prev = d
	ep := e.endpoint(d.EndpointID)
	if o.Breaker == store.BreakerSuccess && ep != nil && ep.state.Load().ConsecutiveFailures == 0 {
		o.Breaker = store.BreakerNone // nothing to reset: spare the write
	}
	st, err := e.store.Complete(ctx, o)
	if err != nil {
		e.log.Error("record attempt", "delivery", d.ID, "endpoint", d.EndpointID, "err", err)
		return false
	}
	if obs := e.opt.Observer; obs != nil {
		obs.Attempted(d.EndpointID, o.Delivery.Status, r.code, r.dur)
	}
	lvl := slog.LevelDebug
	if o.Delivery.Status != store.Success && o.Delivery.Status != store.Filtered {
		lvl = slog.LevelWarn
	}
	if e.log.Enabled(ctx, lvl) {
		e.log.Log(ctx, lvl, "delivery attempt", "trace", d.Trace, "delivery", d.ID, "endpoint", d.EndpointID, "event", d.Event, "attempt", o.Attempt.N,
			"status", o.Delivery.Status, "code", r.code, "duration", r.dur, "error", o.Attempt.Error)
	}
	if ep == nil || st == nil {
		return true
	}
	wasEnabled := ep.state.Load().Enabled
	if err := ep.setState(*st); err != nil {
		e.log.Error("endpoint state", "endpoint", d.EndpointID, "err", err)
	}
	if wasEnabled && !st.Enabled {
		e.log.Warn("endpoint disabled by the breaker", "endpoint", d.EndpointID, "consecutive_failures", st.ConsecutiveFailures)
		if obs := e.opt.Observer; obs != nil {
			obs.BreakerChanged(d.EndpointID, false)
		}
	}
	return true
}

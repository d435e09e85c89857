package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringgate/ringgate/gateway"
	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/ingress"
	"github.com/valyala/fasthttp"
)

// callbackConfig is a gateway with one tracking number and one endpoint on a local sink.
func callbackConfig(dir, sinkURL string) (*config.Config, error) {
	y := fmt.Sprintf(`
server: {listen: "127.0.0.1:0", public_url: "https://calls.example.com", admin: {listen: "127.0.0.1:0", token: "0123456789abcdef"}}
storage: {path: %q}
twilio: {auth_token: benchtoken}
delivery: {allow_http: true, allow_private_networks: true}
workspaces:
  - id: 1
    name: Bench
    campaigns:
      - {id: 1, name: Bench, forward_to: "+15550001111", numbers: [{id: 1, number: "+18005551234", name: Main}]}
    endpoints:
      - {id: sink, name: sink, url: %q, events: [call.started, call.completed, call.missed]}
`, dir, sinkURL)
	return config.Parse([]byte(y), "bench.yaml", os.LookupEnv)
}

// signedCall is the voice and status callbacks of one call, signed, ready to send.
type signedCall struct{ voice, status [2]string } // body, signature

func makeCalls(n int, token string) []signedCall {
	out := make([]signedCall, n)
	for i := range out {
		sid := fmt.Sprintf("CA%032x", i+1)
		v := url.Values{"CallSid": {sid}, "AccountSid": {"AC" + strings.Repeat("0", 32)}, "From": {fmt.Sprintf("+1415%07d", i)},
			"To": {"+18005551234"}, "CallStatus": {"ringing"}, "Direction": {"inbound"}, "ApiVersion": {"2010-04-01"},
			"FromCity": {"SAN FRANCISCO"}, "FromState": {"CA"}, "FromCountry": {"US"}, "FromZip": {"94103"}}
		s := url.Values{"CallSid": {sid}, "CallStatus": {"completed"}, "SequenceNumber": {"3"}, "CallDuration": {"30"}}
		out[i].voice = [2]string{v.Encode(), ingress.Sign(token, "https://calls.example.com/twilio/voice", v)}
		out[i].status = [2]string{s.Encode(), ingress.Sign(token, "https://calls.example.com/twilio/status", s)}
	}
	return out
}

// loader sends callbacks with one long-lived fasthttp client: the same generator for both sides.
type loader struct {
	c    *fasthttp.Client
	base string
}

func (l *loader) send(path string, cb [2]string) (time.Duration, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(l.base + path)
	req.Header.SetMethod("POST")
	req.Header.SetContentType("application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", cb[1])
	req.SetBodyString(cb[0])
	start := time.Now()
	err := l.c.DoTimeout(req, resp, 15*time.Second)
	if err == nil && resp.StatusCode() >= 300 {
		err = fmt.Errorf("%s: %d %s", path, resp.StatusCode(), resp.Body())
	}
	return time.Since(start), err
}

// closedLoop sends every call's two callbacks from workers goroutines and returns requests/s.
func (l *loader) closedLoop(calls []signedCall, workers int) (float64, error) {
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(calls) {
					return
				}
				for _, step := range []struct {
					path string
					cb   [2]string
				}{{"/twilio/voice", calls[i].voice}, {"/twilio/status", calls[i].status}} {
					if _, err := l.send(step.path, step.cb); err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(2*len(calls)) / time.Since(start).Seconds(), nil
}

// bareTwilio is the baseline: a fasthttp handler that parses the form and answers the same TwiML,
// with no signature check, no state and no durability.
func bareTwilio() (string, func(), error) {
	const dial = `<?xml version="1.0" encoding="UTF-8"?><Response><Dial action="https://calls.example.com/twilio/dial" timeout="30"><Number>+15550001111</Number></Dial></Response>`
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if len(ctx.PostArgs().Peek("CallSid")) == 0 {
			ctx.SetStatusCode(400)
			return
		}
		if string(ctx.Path()) == "/twilio/voice" {
			ctx.SetContentType("text/xml; charset=utf-8")
			ctx.SetBodyString(dial)
			return
		}
		ctx.SetStatusCode(204)
	}}
	addr := freeAddr()
	ln, err := listen(addr)
	if err != nil {
		return "", nil, err
	}
	go srv.Serve(ln)
	return "http://" + addr, func() { srv.Shutdown() }, nil
}

func startBenchGateway() (*gateway.Gateway, func(), error) {
	sink, _, stopSink, err := startSink()
	if err != nil {
		return nil, nil, err
	}
	dir, _ := os.MkdirTemp("", "ringbench")
	cfg, err := callbackConfig(dir, sink)
	if err != nil {
		return nil, nil, err
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: quiet})
	if err != nil {
		return nil, nil, err
	}
	if err := g.Start(); err != nil {
		return nil, nil, err
	}
	return g, func() { g.Shutdown(context.Background()); stopSink(); os.RemoveAll(dir) }, nil
}

// benchCallbacks: durable, signed voice + status callbacks against a bare fasthttp handler, and
// the latency of an open-loop load of 1,000 calls/s.
func benchCallbacks() error {
	const workers = 64
	n := envInt("RINGBENCH_CALLS", 3000)
	err := medianRun("signed voice+status callbacks (req/s)", "req/s", "bare fasthttp handler, same load", "≥ 0.5x", func() (float64, float64, string, error) {
		client := &fasthttp.Client{MaxConnsPerHost: workers * 2}
		base, stop, err := bareTwilio()
		if err != nil {
			return 0, 0, "", err
		}
		bare, err := (&loader{client, base}).closedLoop(makeCalls(n, "benchtoken"), workers)
		stop()
		if err != nil {
			return 0, 0, "", err
		}
		g, stopG, err := startBenchGateway()
		if err != nil {
			return 0, 0, "", err
		}
		defer stopG()
		calls := makeCalls(n, "benchtoken")
		c0, o0 := syncStats(g)
		cpu0 := cpuTime()
		if f := os.Getenv("RINGBENCH_GATEWAY_PROFILE"); f != "" {
			pf, _ := os.Create(f)
			pprof.StartCPUProfile(pf)
			defer pprof.StopCPUProfile()
		}
		rate, err := (&loader{client, "http://" + g.Addr()}).closedLoop(calls, workers)
		cpu := (cpuTime() - cpu0) / time.Duration(2*n)
		c1, o1 := syncStats(g)
		return rate, bare, fmt.Sprintf("%d calls, %d concurrent; each voice callback commits the call and a call.started delivery; %.1f commits per fsync, %s CPU per callback (loader included)",
			n, workers, float64(o1-o0)/float64(max(1, c1-c0)), cpu.Round(time.Microsecond)), err
	})
	if err != nil {
		return err
	}
	return benchCallbackLatency()
}

// syncStats reads the store's fsync counters when it keeps them (Badger does).
func syncStats(g *gateway.Gateway) (commits, ops int64) {
	if s, ok := g.Store().(interface{ Stats() (int64, int64) }); ok {
		return s.Stats()
	}
	return 0, 0
}

// benchCallbackLatency sends 1,000 calls/s (2,000 callbacks/s) for 5 s, open loop, and reports
// latency percentiles.
func benchCallbackLatency() error {
	const rate, seconds = 1000, 5
	g, stop, err := startBenchGateway()
	if err != nil {
		return err
	}
	defer stop()
	calls := makeCalls(rate*seconds, "benchtoken")
	l := &loader{&fasthttp.Client{MaxConnsPerHost: 2048}, "http://" + g.Addr()}
	var mu sync.Mutex
	var lat []time.Duration
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range calls {
		at := start.Add(time.Duration(i) * time.Second / rate)
		time.Sleep(time.Until(at))
		wg.Add(1)
		go func(c signedCall) {
			defer wg.Done()
			for _, step := range []struct {
				path string
				cb   [2]string
			}{{"/twilio/voice", c.voice}, {"/twilio/status", c.status}} {
				d, err := l.send(step.path, step.cb)
				if err != nil {
					failed.Add(1)
					return
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}(calls[i])
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) == 0 {
		return fmt.Errorf("no callback succeeded")
	}
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(float64(len(lat))*p))] }
	fmt.Printf("%-44s p50 %s  p99 %s  max %s  (%d callbacks, %d failed; target p99 < 20ms)\n",
		"callback latency at 1,000 calls/s", pct(0.50).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond),
		lat[len(lat)-1].Round(10*time.Microsecond), len(lat), failed.Load())
	return nil
}

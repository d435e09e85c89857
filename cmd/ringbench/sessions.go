package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringgate/ringgate/gateway"
	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/sessions"
	badgerstore "github.com/ringgate/ringgate/gateway/store/badger"
	"github.com/valyala/fasthttp"
)

func poolConfig(dir string, size int) (*config.Config, error) {
	var nums []string
	for i := 0; i < size; i++ {
		nums = append(nums, fmt.Sprintf(`{id: %d, number: "+1800%07d", pool: true}`, i+1, i))
	}
	y := fmt.Sprintf(`
server: {listen: "127.0.0.1:0", public_url: "https://calls.example.com", admin: {listen: "127.0.0.1:0", token: "0123456789abcdef"}, trusted_proxies: [127.0.0.1]}
storage: {path: %q}
twilio: {auth_token: benchtoken}
workspaces:
  - id: 1
    name: Bench
    tracker: {allowed_origins: ["https://example.com"]}
    campaigns:
      - {id: 1, name: Web, forward_to: "+15550001111", swap_numbers: ["+15550001111"], numbers: [%s]}
`, dir, strings.Join(nums, ", "))
	return config.Parse([]byte(y), "bench.yaml", os.LookupEnv)
}

// benchSessions: session create/refresh over HTTP, and matching a call among 100,000 sessions.
func benchSessions() error {
	dir, _ := os.MkdirTemp("", "ringbench")
	defer os.RemoveAll(dir)
	cfg, err := poolConfig(dir, 1000)
	if err != nil {
		return err
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: quiet})
	if err != nil {
		return err
	}
	if err := g.Start(); err != nil {
		return err
	}
	defer g.Shutdown(context.Background())
	const workers, total = 64, 30000
	client := &fasthttp.Client{MaxConnsPerHost: workers * 2}
	url := "http://" + g.Addr() + "/v1/sessions?w=1"
	var n atomic.Int64
	var failed atomic.Int64
	var mu sync.Mutex
	var ids []string
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			for i := n.Add(1); i <= total; i = n.Add(1) {
				body := `{"attribution": {"utm_source": "google", "utm_medium": "cpc", "gclid": "g` + fmt.Sprint(i) + `"}}`
				mu.Lock()
				if i%3 == 0 && len(ids) > 0 { // every third request is a heartbeat of a known session
					body = `{"session_id": "` + ids[int(i)%len(ids)] + `"}`
				}
				mu.Unlock()
				req.Reset()
				req.SetRequestURI(url)
				req.Header.SetMethod("POST")
				req.Header.SetContentType("application/json")
				req.Header.Set("Origin", "https://example.com")
				// each visitor from its own address, through a proxy: the per-address limit runs
				req.Header.Set("X-Forwarded-For", fmt.Sprintf("100.64.%d.%d", i>>8&0xff, i&0xff))
				req.SetBodyString(body)
				if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
					failed.Add(1)
					continue
				}
				var r struct {
					SessionID string `json:"session_id"`
				}
				json.Unmarshal(resp.Body(), &r)
				if i%3 != 0 {
					mu.Lock()
					ids = append(ids, r.SessionID)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	rate := float64(total) / time.Since(start).Seconds()
	fmt.Printf("%-44s %12.0f req/s        (%d creates and heartbeats over HTTP through a trusted proxy, each visitor its own address, %d concurrent, %d failed; target ≥ 20,000/s)\n",
		"visitor session create/refresh", rate, total, workers, failed.Load())

	// Matching: a pool of 1,000 numbers and 100,000 live sessions.
	sdir, _ := os.MkdirTemp("", "ringbench")
	defer os.RemoveAll(sdir)
	st, err := badgerstore.Open(sdir, badgerstore.Options{Logger: quiet})
	if err != nil {
		return err
	}
	defer st.Close()
	svc := sessions.New(sessions.Options{Store: st, Config: func() *config.Config { return cfg }, Logger: quiet})
	if err := svc.Provision(context.Background(), cfg); err != nil {
		return err
	}
	ws := &cfg.Workspaces[0]
	var made atomic.Int64
	var wg2 sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			for made.Add(1) <= 100000 {
				svc.Session(context.Background(), ws, "", map[string]string{"utm_source": "google", "gclid": "x"})
			}
		}()
	}
	wg2.Wait()
	now := time.Now()
	const lookups = 20000
	matched := 0
	start = time.Now()
	for i := 0; i < lookups; i++ {
		a, err := svc.Match(context.Background(), 1, fmt.Sprintf("+1800%07d", rand.IntN(1000)), now)
		if err != nil {
			return err
		}
		if a != nil {
			matched++
		}
	}
	per := time.Since(start) / lookups
	fmt.Printf("%-44s %12s per match  (pool of 1,000 numbers, 100,000 sessions stored; %d of %d matched; target < 50µs)\n",
		"matching a call to its visitor session", per.Round(100*time.Nanosecond), matched, lookups)
	return nil
}

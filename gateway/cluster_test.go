package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringgate/ringgate/gateway"
	"github.com/ringgate/ringgate/gateway/config"
	jsstore "github.com/ringgate/ringgate/gateway/store/jetstream"
	"github.com/ringgate/ringgate/gateway/twiliosim"
)

// roundRobin is the load balancer in front of the ringgate nodes: each request goes to the
// next node, so one call's callbacks land on both.
func roundRobin(t *testing.T, backends ...string) string {
	var n atomic.Uint64
	targets := make([]*url.URL, len(backends))
	for i, b := range backends {
		targets[i], _ = url.Parse(b)
	}
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(targets[n.Add(1)%uint64(len(targets))])
		r.Out.Host = r.In.Host
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: proxy}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestClusterOnJetStream runs two ringgate nodes on a three-node JetStream cluster behind a
// round-robin balancer, plays calls through it, and kills one NATS node in the middle: every
// event of every acknowledged callback arrives, and both nodes agree on the breaker.
func TestClusterOnJetStream(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	srvs, urls, err := jsstore.StartLocalCluster(t.TempDir(), 3, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range srvs {
			s.Shutdown()
		}
	})
	recv := newReceiver(t)
	var deadHits atomic.Int32
	dead := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		deadHits.Add(1)
		w.WriteHeader(500)
	})}
	dln, _ := net.Listen("tcp", "127.0.0.1:0")
	go dead.Serve(dln)
	t.Cleanup(func() { dead.Close() })

	var poolYAML string
	for i := range poolSize {
		n := fmt.Sprintf("+1800555%04d", 7000+i)
		poolYAML += fmt.Sprintf("          - {id: %d, number: %q, pool: true}\n", 10+i, n)
	}
	yaml := func() string {
		return fmt.Sprintf(`
server: {listen: "127.0.0.1:0", public_url: "https://calls.example.com", admin: {listen: "127.0.0.1:0", token: %q}}
storage: {path: %q, backend: jetstream, jetstream: {urls: [%s], replicas: 3}}
twilio: {auth_token: %s}
delivery: {allow_http: true, allow_private_networks: true, retry_schedule: [1s], breaker_threshold: 5}
workspaces:
  - id: 1
    name: My Workspace
    tracker: {allowed_origins: ["https://example.com"]}
    campaigns:
      - id: 42
        name: Google Ads Campaign
        forward_to: "+15550001111"
        numbers: [{id: 1, number: "+18005551234", name: Main}]
      - id: 43
        name: Website pool
        forward_to: "+15550002222"
        numbers:
%s
    endpoints:
      - {id: crm, url: %q, events: [call.started, call.completed, call.missed]}
      - {id: dead, url: "http://%s/hook", events: [call.started]}
`, adminToken, t.TempDir(), strings.Join(urls, ", "), authToken, poolYAML, recv.URL, dln.Addr())
	}
	g1, cfg := runGateway(t, yaml(), gateway.Options{})
	g2, _ := runGateway(t, yaml(), gateway.Options{})
	lb := roundRobin(t, "http://"+g1.Addr(), "http://"+g2.Addr())

	const calls = 60
	outcomes := []string{"answered", "no-answer", "busy"}
	type played struct {
		sid, outcome string
		err          error
	}
	results := make([]played, calls)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 6)
	for i := range calls {
		if i == calls/2 {
			wg.Wait()
			srvs[0].Shutdown() // one NATS node dies in the middle of the load
			t.Log("NATS node n1 stopped")
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			o := outcomes[i%len(outcomes)]
			sid, err := twiliosim.Run(twiliosim.Call{
				Config: cfg, Gateway: lb, To: "+18005551234", From: fmt.Sprintf("+1555010%04d", i), Outcome: o, Retries: 20,
			})
			results[i] = played{sid, o, err}
		}()
	}
	wg.Wait()
	for _, r := range results {
		if r.err != nil {
			t.Errorf("call %s (%s): %v", r.sid, r.outcome, r.err)
		}
	}
	// Every acknowledged callback's events arrive, at least once.
	deadline := time.Now().Add(30 * time.Second)
	for {
		missing := []string{}
		for _, r := range results {
			end := "call.missed"
			if r.outcome == "answered" {
				end = "call.completed"
			}
			for _, ev := range []string{"call.started", end} {
				if len(recv.of(ev, r.sid)) == 0 {
					missing = append(missing, r.sid+" "+ev)
				}
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events never arrived, e.g. %v", len(missing), missing[:min(5, len(missing))])
		}
		time.Sleep(50 * time.Millisecond)
	}
	dup := 0
	seen := map[string]bool{}
	recv.mu.Lock()
	for _, m := range recv.got {
		if seen[fmt.Sprint(m["event"], data(m)["twilio_call_sid"])] {
			dup++
		}
		seen[fmt.Sprint(m["event"], data(m)["twilio_call_sid"])] = true
	}
	recv.mu.Unlock()
	t.Logf("%d calls, %d deliveries to crm, %d of them repeats (at-least-once)", calls, recv.count(), dup)
	// call_log_ids are unique across both nodes.
	ids := map[float64]string{}
	for _, m := range recv.of("call.started", "") {
		id, _ := data(m)["call_log_id"].(float64)
		sid, _ := data(m)["twilio_call_sid"].(string)
		if other, ok := ids[id]; ok && other != sid {
			t.Fatalf("call_log_id %v given to %s and %s", id, other, sid)
		}
		ids[id] = sid
	}
	// One breaker: failures on both nodes add up to the threshold, and both see it tripped.
	for deadline := time.Now().Add(20 * time.Second); ; {
		v1, _ := g1.Engine().Endpoint("dead")
		v2, _ := g2.Engine().Endpoint("dead")
		if !v1.State.Enabled && !v2.State.Enabled {
			break
		}
		if time.Now().After(deadline) {
			st, err := g1.Store().Endpoint(t.Context(), "dead")
			t.Fatalf("the nodes disagree on the breaker: node 1 %+v, node 2 %+v; stored %+v %v; %d attempts",
				v1.State, v2.State, st, err, deadHits.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	st, err := g2.Store().Endpoint(t.Context(), "dead")
	if err != nil || st.Enabled || st.ConsecutiveFailures < 5 {
		t.Fatalf("stored breaker: %+v %v", st, err)
	}
	t.Logf("dead endpoint: %d attempts, %d consecutive failures recorded", deadHits.Load(), st.ConsecutiveFailures)

	// Visitors arriving at both nodes at once never share a number, and a call to a number
	// finds its visitor whichever node takes it.
	type visit struct{ gclid, number string }
	visits := make([]visit, poolSize)
	for i := range visits {
		wg.Add(1)
		go func() {
			defer wg.Done()
			visits[i] = visit{gclid: fmt.Sprintf("gclid-%d", i), number: newSession(t, lb, fmt.Sprintf("gclid-%d", i))}
		}()
	}
	wg.Wait()
	holder := map[string]string{}
	for _, v := range visits {
		if other, ok := holder[v.number]; ok {
			t.Fatalf("number %s handed to two visitors (%s and %s)", v.number, other, v.gclid)
		}
		holder[v.number] = v.gclid
	}
	for _, v := range visits {
		sid, err := twiliosim.Run(twiliosim.Call{Config: cfg, Gateway: lb, To: v.number, From: "+15559990000", Outcome: "answered", Retries: 20})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "call.started of "+sid, func() bool { return len(recv.of("call.started", sid)) > 0 })
		vs, _ := data(recv.of("call.started", sid)[0])["visitor_session"].(map[string]any)
		if vs["gclid"] != v.gclid {
			t.Fatalf("call to %s attributed to %v, want the visitor with %s", v.number, vs["gclid"], v.gclid)
		}
	}
	t.Logf("%d visitors held %d distinct numbers; each call matched its visitor", len(visits), len(holder))
}

const poolSize = 6

// newSession creates a visitor session through the balancer and returns the number it holds.
func newSession(t *testing.T, base, gclid string) string {
	body := fmt.Sprintf(`{"attribution": {"gclid": %q, "utm_source": "google"}}`, gclid)
	req, _ := http.NewRequest("POST", base+"/v1/sessions?w=1", strings.NewReader(body))
	req.Header.Set("Origin", "https://example.com")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return ""
	}
	defer resp.Body.Close()
	var out struct {
		Number string `json:"number"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || out.Number == "" {
		t.Errorf("session: %d %v %+v", resp.StatusCode, err, out)
	}
	return out.Number
}

// freePorts reserves n loopback ports (closed again at once: the servers bind them next).
func freePorts(t *testing.T, n int) []int {
	var out []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
	}
	return out
}

// TestEmbeddedCluster runs three ringgate nodes with embedded: true: each starts its own NATS
// server and the three form the JetStream cluster from their routes, with no NATS to install.
// A call played across them is delivered once its callbacks are answered, and a node that
// stops takes nothing with it.
func TestEmbeddedCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes")
	}
	recv := newReceiver(t)
	ports := freePorts(t, 3)
	yaml := func(i int) string {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
		}
		return fmt.Sprintf(`
server: {listen: "127.0.0.1:0", public_url: "https://calls.example.com", admin: {listen: "127.0.0.1:0", token: %q}}
storage:
  backend: jetstream
  path: %q
  jetstream: {embedded: true, name: node%d, cluster_listen: "127.0.0.1:%d", routes: [%s], replicas: 3}
twilio: {auth_token: %s}
delivery: {allow_http: true, allow_private_networks: true}
workspaces:
  - id: 1
    name: My Workspace
    campaigns:
      - id: 42
        name: Google Ads Campaign
        forward_to: "+15550001111"
        numbers: [{id: 1, number: "+18005551234", name: Main}]
    endpoints:
      - {id: crm, url: %q, events: [call.started, call.completed, call.missed]}
`, adminToken, t.TempDir(), i+1, ports[i], strings.Join(routes, ", "), authToken, recv.URL)
	}
	// The nodes start together, as on three machines: each waits for the cluster's quorum.
	gs := make([]*gateway.Gateway, 3)
	var cfg *config.Config
	var wg sync.WaitGroup
	for i := range gs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := config.Parse([]byte(yaml(i)), "node.yaml", func(string) (string, bool) { return "", false })
			if err != nil {
				t.Error(err)
				return
			}
			g, err := gateway.New(c, gateway.Options{Logger: quiet()})
			if err != nil {
				t.Error(err)
				return
			}
			if err := g.Start(); err != nil {
				t.Error(err)
				return
			}
			gs[i] = g
			if i == 0 {
				cfg = c
			}
		}()
	}
	wg.Wait()
	for _, g := range gs {
		if g != nil {
			t.Cleanup(func() { g.Shutdown(context.Background()) })
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	lb := roundRobin(t, "http://"+gs[0].Addr(), "http://"+gs[1].Addr(), "http://"+gs[2].Addr())
	var sids []string
	for i := range 6 {
		if i == 3 {
			if err := gs[2].Shutdown(context.Background()); err != nil { // node 3 leaves: ringgate and its NATS server
				t.Fatal(err)
			}
			lb = roundRobin(t, "http://"+gs[0].Addr(), "http://"+gs[1].Addr())
		}
		sid, err := twiliosim.Run(twiliosim.Call{Config: cfg, Gateway: lb, To: "+18005551234", From: fmt.Sprintf("+1555020%04d", i), Outcome: "no-answer", Retries: 20})
		if err != nil {
			t.Fatal(err)
		}
		sids = append(sids, sid)
	}
	for _, sid := range sids {
		eventually(t, "call.started and call.missed of "+sid, func() bool {
			return len(recv.of("call.started", sid)) > 0 && len(recv.of("call.missed", sid)) > 0
		})
	}
}

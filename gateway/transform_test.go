package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"github.com/ringgate/ringgate/gateway"
	"github.com/ringgate/ringgate/gateway/delivery"
)

// The engine hands a transform's body back to the host once it is sent, and later calls write
// theirs into it: under concurrent deliveries, each receiver still gets its own call's body, and
// the signature covers what arrived.
func TestTransformedBodiesAreEachTheirOwn(t *testing.T) {
	module, _ := filepath.Abs("../plugins/examples/gohighlevel/gohighlevel.wasm")
	if _, err := os.Stat(module); err != nil {
		t.Fatalf("%v: run make plugins first (make test does)", err)
	}
	const secret = "whsec_ZGVtby1zZWNyZXQtZm9yLWxvY2FsLXRlc3Rpbmc="
	signer, err := delivery.NewSigner(secret, "")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var phones []string
	var problems []string
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m struct{ Phone string }
		err := json.Unmarshal(body, &m)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%v: %s", err, body))
		case r.Header.Get("Signature") != signer.Signature(body):
			problems = append(problems, "signature does not cover "+string(body))
		}
		phones = append(phones, m.Phone)
		w.WriteHeader(204)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	y := testYAML(fmt.Sprintf("{path: %q}", t.TempDir()), fmt.Sprintf(`
delivery: {allow_http: true, allow_private_networks: true, max_in_flight: 8}
workspaces:
  - id: 1
    name: W
    campaigns:
      - {id: 42, name: Ads, forward_to: "+15550001111", numbers: [{id: 1, number: "+18005551234", name: Main}]}
    endpoints:
      - {id: ghl, name: GHL, url: "http://%s/hook", secret: %q, events: [call.completed], transform: {module: %q}}
`, ln.Addr(), secret, module))
	g, cfg := runGateway(t, y, gateway.Options{})
	e := &env{t: t, g: g, cfg: cfg, base: "http://" + g.Addr()}

	const calls = 24
	var want []string
	var wg sync.WaitGroup
	for i := range calls {
		from := fmt.Sprintf("+1415555%04d", i)
		want = append(want, from)
		wg.Go(func() { e.call("+18005551234", from, "answered") })
	}
	wg.Wait()
	eventually(t, "every call.completed delivered", func() bool { mu.Lock(); defer mu.Unlock(); return len(phones) >= calls })
	mu.Lock()
	defer mu.Unlock()
	sort.Strings(phones)
	if fmt.Sprint(phones) != fmt.Sprint(want) || len(problems) > 0 {
		t.Fatalf("receiver got phones %v, want %v; %v", phones, want, problems)
	}
}

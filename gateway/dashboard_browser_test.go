package gateway_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/ringgate/ringgate/gateway"
	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/events"
	"github.com/ringgate/ringgate/gateway/twiliosim"
)

// artifacts is where the dashboard's screenshots go (README: artifacts/screenshots).
func artifacts(t testing.TB) string {
	dir := os.Getenv("RINGGATE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "artifacts", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// dashboardGateway runs a gateway whose endpoint posts to a receiver the test can break.
func dashboardGateway(t *testing.T) (*gateway.Gateway, *config.Config, *atomic.Int32) {
	status := &atomic.Int32{}
	status.Store(200)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
		fmt.Fprintf(w, `{"received": true, "status": %d}`, status.Load())
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	y := fmt.Sprintf(`
server: {listen: "127.0.0.1:0", public_url: "https://calls.example.com", admin: {listen: "127.0.0.1:0", token: %q}}
storage: {path: %q}
twilio: {auth_token: %s}
delivery: {allow_http: true, allow_private_networks: true, retry_schedule: [1s], breaker_threshold: 2, retry_jitter: 0}
workspaces:
  - id: 1
    name: My Workspace
    campaigns:
      - {id: 42, name: Google Ads Campaign, forward_to: "+15550001111", numbers: [{id: 1, number: "+18005551234", name: "Google Ads - Main"}]}
    endpoints:
      - {id: crm, name: CRM Integration, url: "http://%s/hook", events: [call.completed, call.missed, lead.qualified]}
`, adminToken, t.TempDir(), authToken, ln.Addr().String())
	g, cfg := runGateway(t, y, gateway.Options{})
	return g, cfg, status
}

func TestDashboardInChromium(t *testing.T) {
	if os.Getenv("RINGGATE_SKIP_BROWSER") != "" {
		t.Skip("RINGGATE_SKIP_BROWSER is set")
	}
	g, cfg, status := dashboardGateway(t)
	admin := "http://" + g.AdminAddr()
	shots := artifacts(t)
	ctx := browser(t)
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		for _, a := range actions {
			if _, err := chromedp.Run(ctx, a); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
	}
	text := func(sel string) string {
		s, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		return s
	}
	shot := func(name string) {
		t.Helper()
		b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// flash waits for the page a form action leads to, by its flash message.
	flash := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(text("#flash"), want) {
			if time.Now().After(deadline) {
				t.Fatalf("flash %q never showed (got %q)", want, text("#flash"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// waitFor reloads path until the text of sel contains want.
	waitFor := func(path, sel, want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			// A navigation right after a form's submission can be aborted by it: try again.
			if _, err := chromedp.Run(ctx, chromedp.Navigate(admin+path)); err == nil && strings.Contains(text(sel), want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s never showed %q (got %q)", path, sel, want, text(sel))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// Sign in: a wrong token is refused, the right one opens the endpoints.
	run("open", chromedp.Navigate(admin+"/"))
	if !strings.Contains(text("h1"), "Sign in") {
		t.Fatalf("not sent to the sign-in page: %q", text("h1"))
	}
	run("keep pages still", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[any](`localStorage.setItem("ringgate-live", "off")`)(ctx, tg)
		return err
	}))
	shot("01-sign-in")
	run("wrong token", chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token"), chromedp.Click(chromedp.CSS("#signin")))
	flash("Wrong admin token")
	run("sign in", chromedp.SetValue(chromedp.CSS("#token"), adminToken), chromedp.Click(chromedp.CSS("#signin")))
	time.Sleep(300 * time.Millisecond)
	waitFor("/", "#endpoints", "CRM Integration")
	shot("02-endpoints")

	// Send a test and see it succeed.
	run("endpoint", chromedp.Navigate(admin+"/endpoints/crm"))
	run("send test", chromedp.SetValue(chromedp.CSS("#test-event"), "call.missed"), chromedp.Click(chromedp.CSS("#send-test")))
	flash("queued")
	waitFor("/endpoints/crm", "#deliveries", "success")
	if !strings.Contains(text("#deliveries"), "call.missed") {
		t.Fatalf("test delivery not listed: %q", text("#deliveries"))
	}
	shot("03-send-test-succeeded")

	// Break the receiver: watch the retries, then the breaker disable the endpoint.
	status.Store(503)
	for i := 0; i < 2; i++ {
		run("endpoint", chromedp.Navigate(admin+"/endpoints/crm"))
		run("send failing test", chromedp.Click(chromedp.CSS("#send-test")))
		flash("queued")
	}
	waitFor("/endpoints/crm", "#deliveries", "retrying")
	shot("04-retrying")
	waitFor("/endpoints/crm", "#state", "disabled")
	shot("05-disabled-by-breaker")
	failedHref, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("#deliveries tr")].find(r => r.textContent.includes("failed")).querySelector("a").getAttribute("href")`))
	if failedHref == "" {
		t.Fatal("no failed delivery listed")
	}
	// While disabled, a new delivery is held.
	run("endpoint", chromedp.Navigate(admin+"/endpoints/crm"))
	run("send held test", chromedp.Click(chromedp.CSS("#send-test")))
	flash("queued")
	waitFor("/endpoints/crm", "#deliveries", "held")

	// Re-enable: the held delivery goes out.
	status.Store(200)
	run("re-enable", chromedp.Navigate(admin+"/endpoints/crm"), chromedp.Click(chromedp.CSS("#reenable")))
	flash("Re-enabled; 1 held deliveries released")
	waitFor("/endpoints/crm", "#state", "enabled")
	shot("06-re-enabled")

	// Retry a failed delivery.
	run("delivery", chromedp.Navigate(admin+failedHref))
	shot("07-failed-delivery")
	if !strings.Contains(text("#attempts"), "503") {
		t.Fatalf("attempts: %q", text("#attempts"))
	}
	run("retry", chromedp.Click(chromedp.CSS("#retry")))
	flash("Retry queued")
	waitFor(failedHref, "#status", "success")
	shot("08-retried-delivery")

	// Calls with their attribution, and Qualify lead.
	sid, err := twiliosim.Run(twiliosim.Call{Config: cfg, Gateway: "http://" + g.Addr(), To: "+18005551234", From: "+14155550100", Outcome: "answered"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor("/calls", "#calls", "+14155550100")
	shot("09-calls")
	href, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#calls a").getAttribute("href")`))
	run("call", chromedp.Navigate(admin+href))
	run("qualify", chromedp.SendKeys(chromedp.CSS("input[name=deal_value]"), "2500"), chromedp.SendKeys(chromedp.CSS("input[name=tags]"), "High Intent, PPC"), chromedp.Click(chromedp.CSS("#qualify")))
	flash("Lead qualified")
	shot("10-call-qualified")
	_ = sid
	for _, f := range []string{"01-sign-in", "05-disabled-by-breaker", "10-call-qualified"} {
		if st, err := os.Stat(filepath.Join(shots, f+".png")); err != nil || st.Size() < 5000 {
			t.Fatalf("screenshot %s missing or empty", f)
		}
	}
	_ = events.LeadQualified
}

// Actions need a signed-in session and its CSRF token; a wrong admin token is refused.
func TestDashboardRefusesForgeries(t *testing.T) {
	g, _, _ := dashboardGateway(t)
	admin := "http://" + g.AdminAddr()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string, form url.Values, cookie string) (*http.Response, string) {
		req, _ := http.NewRequest(method, admin+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 64<<10)
		n, _ := resp.Body.Read(b)
		resp.Body.Close()
		return resp, string(b[:n])
	}
	if resp, _ := do("GET", "/", nil, ""); resp.StatusCode != 303 || !strings.HasSuffix(resp.Header.Get("Location"), "/login") {
		t.Fatalf("unsigned GET /: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := do("POST", "/login", url.Values{"token": {"wrong"}}, ""); resp.StatusCode != 401 {
		t.Fatalf("wrong token: %d", resp.StatusCode)
	}
	resp, _ := do("POST", "/login", url.Values{"token": {adminToken}}, "")
	cookie := resp.Header.Get("Set-Cookie")
	if resp.StatusCode != 303 || !strings.Contains(cookie, "HttpOnly") || !strings.Contains(strings.ToLower(cookie), "samesite=strict") {
		t.Fatalf("sign in: %d %q", resp.StatusCode, cookie)
	}
	session := strings.Split(cookie, ";")[0]
	_, page := do("GET", "/endpoints/crm", nil, session)
	m := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the page")
	}
	for name, form := range map[string]url.Values{
		"missing": {"event": {"call.missed"}},
		"forged":  {"event": {"call.missed"}, "csrf": {strings.Repeat("0", 32)}},
	} {
		if resp, _ := do("POST", "/endpoints/crm/test", form, session); resp.StatusCode != 403 {
			t.Errorf("%s CSRF token: %d, want 403", name, resp.StatusCode)
		}
	}
	if resp, _ := do("POST", "/endpoints/crm/test", url.Values{"event": {"call.missed"}, "csrf": {m[1]}}, session); resp.StatusCode != 303 {
		t.Errorf("good CSRF token: %d", resp.StatusCode)
	}
	// The signed-in operator downloads a backup; nobody else does.
	if resp, body := do("GET", "/backup", nil, session); resp.StatusCode != 200 || !strings.HasPrefix(body, "ringgate backup 1\n") {
		t.Errorf("backup from the dashboard: %d %.40q", resp.StatusCode, body)
	}
	if resp, _ := do("GET", "/backup", nil, ""); resp.StatusCode != 303 {
		t.Errorf("backup without signing in: %d", resp.StatusCode)
	}
	// A cookie forged without the admin token, and a wrong bearer token.
	if resp, _ := do("GET", "/", nil, "ringgate_session=v1.9999999999."+strings.Repeat("a", 64)); resp.StatusCode != 303 {
		t.Errorf("forged cookie: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", admin+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer wrong")
	if r, _ := http.DefaultClient.Do(req); r.StatusCode != 401 {
		t.Errorf("metrics with a wrong token: %d", r.StatusCode)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	r, err := http.DefaultClient.Do(req)
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("metrics: %v %v", err, r)
	}
	b := make([]byte, 1<<20)
	n, _ := r.Body.Read(b)
	r.Body.Close()
	for _, want := range []string{"ringgate_endpoint_enabled", "ringgate_deliveries_queued", "go_goroutines"} {
		if !strings.Contains(string(b[:n]), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

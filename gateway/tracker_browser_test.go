package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/ringgate/ringgate/gateway"
	"github.com/ringgate/ringgate/gateway/events"
	"github.com/ringgate/ringgate/gateway/twiliosim"
)

// chromiumPath finds Debian's chromium (installed by .ci/run).
func chromiumPath(t testing.TB) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: apt-get install chromium (.ci/run does)")
	return ""
}

// browser starts headless Chromium with the flags this machine needs (no sandbox as root, no
// background traffic to Google's hosts).
func browser(t testing.TB) context.Context {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-first-run", true), chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(cancel3)
	return ctx
}

const landingPage = `<!doctype html><html><head><title>Plumbing</title></head><body>
<p id="t1">Call (555) 000-1111 today</p>
<p id="t2">or 555-000-1111</p>
<p id="t3">or 555.000.1111</p>
<p id="t4">or +1 555 000 1111</p>
<p id="t5">international +15550001111</p>
<a id="tel" href="tel:+15550001111">call us</a>
<p id="other">Our fax 555-999-0000 stays</p>
<form id="f1" action="/submit"><input name="email"><input type="hidden" name="gclid" value="old"></form>
<div id="late"></div>
<script>setTimeout(function () {
  document.getElementById("late").innerHTML = '<span id="t6">Late: (555) 000-1111</span><form id="f2"><input name="name"></form>';
}, 400);</script>
<script async src="%s/t.js?w=1"></script>
</body></html>`

func TestTrackerInChromium(t *testing.T) {
	if os.Getenv("RINGGATE_SKIP_BROWSER") != "" {
		t.Skip("RINGGATE_SKIP_BROWSER is set")
	}
	recv := newReceiver(t)
	siteLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	site := "http://" + siteLn.Addr().String()
	y := fmt.Sprintf(`
server: {listen: "127.0.0.1:0", public_url: "https://calls.example.com", admin: {listen: "127.0.0.1:0", token: %q}}
storage: {path: %q}
twilio: {auth_token: %s}
delivery: {allow_http: true, allow_private_networks: true}
workspaces:
  - id: 1
    name: My Workspace
    tracker: {allowed_origins: [%q]}
    campaigns:
      - id: 42
        name: Google Ads Campaign
        forward_to: "+15550001111"
        source: {utm_source: google, utm_medium: cpc}
        swap_numbers: ["+15550001111"]
        numbers:
          - {id: 1, number: "+18005551234", name: "Google Ads - Main", pool: true}
          - {id: 2, number: "+18005551235", name: "Google Ads - 2", pool: true}
    endpoints:
      - {id: crm, name: CRM, url: %q, events: [call.completed]}
`, adminToken, t.TempDir(), authToken, site, recv.URL)
	g, cfg := runGateway(t, y, gateway.Options{})
	gw := "http://" + g.Addr()

	mux := http.NewServeMux()
	mux.HandleFunc("/landing", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "_ga", Value: "GA1.1.1234567890.1700000000", Path: "/"})
		http.SetCookie(w, &http.Cookie{Name: "_ga_ABC123", Value: "GS1.1.1700001234.1.1.1700001300.0.0.0", Path: "/"})
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, landingPage, gw)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(siteLn)
	t.Cleanup(func() { srv.Close() })

	landing := site + "/landing?utm_source=google&utm_medium=cpc&utm_campaign=winter-sale-2026&utm_term=plumber+near+me&utm_content=ad-variant-a&gclid=CjwKCAiA-browser-test"
	ctx := browser(t)
	if _, err := chromedp.Run(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.Navigate, page.NavigateParams{URL: landing, Referrer: "http://search.example/results?q=plumber+near+me"})
		return err
	})); err != nil {
		t.Fatal(err)
	}
	text := textOf(t, ctx)
	// Wait for the swap, including the content added later.
	deadline := time.Now().Add(20 * time.Second)
	for strings.Contains(text("#t1"), "000-1111") || !strings.Contains(text("#late"), "Late") || strings.Contains(text("#late"), "000-1111") {
		if time.Now().After(deadline) {
			html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
			t.Fatalf("numbers not swapped:\n%s", html)
		}
		time.Sleep(50 * time.Millisecond)
	}
	digits := regexp.MustCompile(`\d`).FindAllString(text("#t2"), -1)
	shown := "+1" + strings.Join(digits, "")
	if shown != "+18005551234" && shown != "+18005551235" {
		t.Fatalf("shown number %s is not a pool number", shown)
	}
	d := shown[2:]
	for sel, want := range map[string]string{
		"#t1":    "Call (" + d[:3] + ") " + d[3:6] + "-" + d[6:] + " today",
		"#t2":    "or " + d[:3] + "-" + d[3:6] + "-" + d[6:],
		"#t3":    "or " + d[:3] + "." + d[3:6] + "." + d[6:],
		"#t4":    "or +1 " + d[:3] + " " + d[3:6] + " " + d[6:],
		"#t5":    "international " + shown,
		"#t6":    "Late: (" + d[:3] + ") " + d[3:6] + "-" + d[6:],
		"#other": "Our fax 555-999-0000 stays",
	} {
		if got := text(sel); got != want {
			t.Errorf("%s = %q, want %q", sel, got, want)
		}
	}
	href, _ := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("#tel"), "href"))
	if href.Value != "tel:"+shown {
		t.Errorf("tel link %q", href.Value)
	}
	// Hidden attribution in both forms, the existing input filled, nothing added when empty.
	want := map[string]string{
		"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "winter-sale-2026", "utm_term": "plumber near me",
		"utm_content": "ad-variant-a", "gclid": "CjwKCAiA-browser-test", "ga_client_id": "1234567890.1700000000",
		"ga_session_id": "1700001234", "referrer_url": "http://search.example/", // strict-origin-when-cross-origin: the origin only
		"landing_page_url": landing,
	}
	for _, form := range []string{"#f1", "#f2"} {
		js := `Object.fromEntries([...document.querySelectorAll("` + form + ` input")].filter(i => i.name !== "email" && i.name !== "name").map(i => [i.name, i.value]))`
		fields, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](js))
		if err != nil {
			t.Fatal(err)
		}
		if len(fields) != len(want) {
			t.Errorf("%s has %d attribution inputs, want %d: %v", form, len(fields), len(want), fields)
		}
		for k, v := range want {
			if fields[k] != v {
				t.Errorf("%s %s = %q, want %q", form, k, fields[k], v)
			}
		}
	}
	count, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#f1 input[name=gclid]").length`))
	if count != 1 {
		t.Errorf("the form's own gclid input was duplicated (%d)", count)
	}

	// A call to the number shown carries exactly that visit.
	sid, err := twiliosim.Run(twiliosim.Call{Config: cfg, Gateway: gw, To: shown, From: "+14155550199", Outcome: "answered"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "call.completed", func() bool { return len(recv.of(events.CallCompleted, sid)) == 1 })
	data := data(recv.of(events.CallCompleted, sid)[0])
	if data["utm_source"] != "google" || data["utm_medium"] != "cpc" {
		t.Errorf("promoted utm fields: %v %v", data["utm_source"], data["utm_medium"])
	}
	vs, _ := data["visitor_session"].(map[string]any)
	if vs == nil {
		t.Fatalf("visitor_session is null: %v", data)
	}
	for _, k := range []string{"gclid", "gbraid", "wbraid", "fbclid", "msclkid", "ttclid", "li_fat_id", "ga_client_id", "ga_session_id", "utm_campaign", "utm_term", "utm_content", "referrer_url", "landing_page_url"} {
		w, has := want[k]
		if !has {
			if vs[k] != nil {
				t.Errorf("visitor_session.%s = %v, want null", k, vs[k])
			}
			continue
		}
		if vs[k] != w {
			t.Errorf("visitor_session.%s = %v, want %q", k, vs[k], w)
		}
	}
	// The dashboard's tracker page shows the pool with the visitor's number held.
	resp, page := adminGet(t, g, "/tracker")
	if resp.StatusCode != 200 || !strings.Contains(string(page), "<td>Google Ads Campaign</td><td>2</td><td>1</td><td>1</td>") {
		t.Errorf("tracker page: %d\n%s", resp.StatusCode, page)
	}
	var tr struct {
		Sessions map[string]int64 `json:"sessions"`
		Pools    []struct {
			CampaignID int64 `json:"campaign_id"`
			Size, Held int
		} `json:"pools"`
	}
	_, body := adminGet(t, g, "/api/v1/tracker")
	json.Unmarshal(body, &tr)
	if tr.Sessions["started"] != 1 || len(tr.Pools) != 1 || tr.Pools[0].CampaignID != 42 || tr.Pools[0].Size != 2 || tr.Pools[0].Held != 1 {
		t.Errorf("GET /api/v1/tracker: %+v", tr)
	}
}

// trackedSite runs a gateway whose workspace (named name, with the one campaign given as a
// YAML flow mapping) lets the site's origin run the tracker, and a site serving page (a format
// string given the gateway's address). It skips when browsers are off.
func trackedSite(t *testing.T, name, campaign, page string) (*gateway.Gateway, string) {
	t.Helper()
	if os.Getenv("RINGGATE_SKIP_BROWSER") != "" {
		t.Skip("RINGGATE_SKIP_BROWSER is set")
	}
	siteLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	site := "http://" + siteLn.Addr().String()
	g, _ := runGateway(t, testYAML(fmt.Sprintf("{path: %q}", t.TempDir()), fmt.Sprintf(`
workspaces:
  - id: 1
    name: %s
    tracker: {allowed_origins: [%q]}
    campaigns:
      - %s
`, name, site, campaign)), gateway.Options{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, page, g.Addr())
	})}
	go srv.Serve(siteLn)
	t.Cleanup(func() { srv.Close() })
	return g, site
}

// textOf reads an element's text on the page in ctx.
func textOf(t *testing.T, ctx context.Context) func(sel string) string {
	return func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		return s
	}
}

// With data-consent="wait" the tracker stores, reads and sends nothing until the page calls
// ringgate.consent(); then it swaps the number as usual.
func TestTrackerWaitsForConsent(t *testing.T) {
	g, site := trackedSite(t, "My Workspace",
		`{id: 42, name: Web, forward_to: "+15550001111", swap_numbers: ["+15550001111"], numbers: [{id: 1, number: "+18005551234", pool: true}]}`,
		`<!doctype html><html><body><p id="t1">Call (555) 000-1111</p>
<form id="f1"><input name="email"></form>
<script async data-consent="wait" src="http://%s/t.js?w=1"></script></body></html>`)
	ctx := browser(t)
	if _, err := chromedp.Run(ctx, chromedp.Navigate(site+"/?utm_source=google&gclid=abc")); err != nil {
		t.Fatal(err)
	}
	// Until consent: the script has loaded, and left the page, the storage and the gateway alone.
	eventually(t, "the tracker to load", func() bool {
		ok, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`typeof window.ringgate === "object" && typeof window.ringgate.consent === "function"`))
		return ok
	})
	time.Sleep(300 * time.Millisecond)
	state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("t1").textContent + "|" + localStorage.length + "|" + document.querySelectorAll("#f1 input").length`))
	if state != "Call (555) 000-1111|0|1" {
		t.Fatalf("before consent: %s", state)
	}
	if st := g.Tracker().Stats(); st.Created != 0 {
		t.Fatalf("a session was started before consent: %+v", st)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](`window.ringgate.consent()`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the number swapped after consent", func() bool {
		s, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#t1")))
		return s == "Call (800) 555-1234"
	})
	if st := g.Tracker().Stats(); st.Created != 1 {
		t.Fatalf("sessions after consent: %+v", st)
	}
}

// Numbers outside North America are swapped in the formats pages write them: national with a
// trunk 0, +CC with or without "(0)", 00CC, and in tel: links; other numbers stay.
func TestTrackerSwapsInternationalNumbers(t *testing.T) {
	_, site := trackedSite(t, "London",
		`{id: 42, name: Web, forward_to: "+442079460018", swap_numbers: ["+442079460018"], numbers: [{id: 1, number: "+442079460099", pool: true}]}`,
		`<!doctype html><html><body>
<p id="u1">Call 020 7946 0018 today</p><p id="u2">+44 20 7946 0018</p><p id="u3">+44 (0)20 7946 0018</p>
<p id="u4">0044 20 7946 0018</p><p id="u5">020-7946-0018.</p><p id="u6">(020) 7946 0018</p>
<p id="other">Fax 020 7946 9999 stays</p><a id="tel" href="tel:+442079460018">call</a>
<script async src="http://%s/t.js?w=1"></script></body></html>`)
	ctx := browser(t)
	if _, err := chromedp.Run(ctx, chromedp.Navigate(site+"/")); err != nil {
		t.Fatal(err)
	}
	text := textOf(t, ctx)
	eventually(t, "the swap", func() bool { return strings.Contains(text("#u1"), "0099") })
	for sel, want := range map[string]string{
		"#u1": "Call 020 7946 0099 today", "#u2": "+44 20 7946 0099", "#u3": "+44 (0)20 7946 0099",
		"#u4": "0044 20 7946 0099", "#u5": "020-7946-0099.", "#u6": "(020) 7946 0099",
		"#other": "Fax 020 7946 9999 stays",
	} {
		if got := text(sel); got != want {
			t.Errorf("%s = %q, want %q", sel, got, want)
		}
	}
	href, _ := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("#tel"), "href"))
	if href.Value != "tel:+442079460099" {
		t.Errorf("tel link %q", href.Value)
	}
}

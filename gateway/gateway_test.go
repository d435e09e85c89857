package gateway_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringgate/ringgate/gateway"
	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/events"
	"github.com/ringgate/ringgate/gateway/ingress"
	"github.com/ringgate/ringgate/gateway/twilioapi"
	"github.com/ringgate/ringgate/gateway/twiliosim"
	"github.com/twilio/twilio-go/client"
)

const (
	adminToken = "test-admin-token-0123456789"
	authToken  = "0123456789abcdef0123456789abcdef"
	account    = "AC0123456789abcdef0123456789abcdef"
)

// receiver collects deliveries.
type receiver struct {
	srv *http.Server
	URL string
	mu  sync.Mutex
	got []map[string]any
}

func newReceiver(t testing.TB) *receiver {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{URL: "http://" + ln.Addr().String() + "/hook"}
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var m map[string]any
		json.NewDecoder(req.Body).Decode(&m)
		r.mu.Lock()
		r.got = append(r.got, m)
		r.mu.Unlock()
		w.WriteHeader(204)
	})}
	go r.srv.Serve(ln)
	t.Cleanup(func() { r.srv.Close() })
	return r
}

// of returns the deliveries of one event type (for one call when sid is set).
func (r *receiver) of(typ, sid string) []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]any
	for _, m := range r.got {
		if m["event"] != typ {
			continue
		}
		data, _ := m["data"].(map[string]any)
		if sid != "" && data["twilio_call_sid"] != sid {
			continue
		}
		out = append(out, m)
	}
	return out
}

func (r *receiver) count() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.got) }

// fakeTwilio plays Twilio's REST API: Lookup v2 and Voice Intelligence.
type fakeTwilio struct {
	URL         string
	lookups     atomic.Int32
	transcripts atomic.Int32
	mu          sync.Mutex
	channel     string
	customerKey string
}

func newFakeTwilio(t testing.TB) *fakeTwilio {
	f := &fakeTwilio{}
	mux := http.NewServeMux()
	meta := func(key string) map[string]any {
		return map[string]any{"page": 0, "page_size": 50, "first_page_url": "", "previous_page_url": nil, "url": "", "next_page_url": nil, "key": key}
	}
	mux.HandleFunc("GET /v2/PhoneNumbers/{n}", func(w http.ResponseWriter, r *http.Request) {
		f.lookups.Add(1)
		if r.URL.Query().Get("Fields") != "caller_name" {
			http.Error(w, `{"code": 20001, "message": "bad fields"}`, 400)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{
			"phone_number": r.PathValue("n"), "country_code": "US", "valid": true,
			"caller_name": map[string]any{"caller_name": "JOHN SMITH", "caller_type": "CONSUMER", "error_code": nil},
		})
	})
	mux.HandleFunc("POST /v2/Transcripts", func(w http.ResponseWriter, r *http.Request) {
		f.transcripts.Add(1)
		r.ParseForm()
		f.mu.Lock()
		f.channel, f.customerKey = r.Form.Get("Channel"), r.Form.Get("CustomerKey")
		f.mu.Unlock()
		w.WriteHeader(201)
		json.NewEncoder(w).Encode(map[string]any{"sid": "GT0123456789abcdef0123456789abcdef", "status": "queued", "service_sid": r.Form.Get("ServiceSid")})
	})
	mux.HandleFunc("GET /v2/Transcripts/{sid}/Sentences", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"sentences": []map[string]any{
			{"media_channel": 1, "sentence_index": 0, "transcript": "Hi, I'm calling about your services.", "confidence": "0.96", "sid": "GX1"},
			{"media_channel": 2, "sentence_index": 1, "transcript": "Sure, how can I help?", "confidence": "0.94", "sid": "GX2"},
		}, "meta": meta("sentences")})
	})
	mux.HandleFunc("GET /v2/Transcripts/{sid}/OperatorResults", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"operator_results": []map[string]any{
			{"operator_type": "text-generation", "name": "Conversation Summary", "text_generation_results": map[string]any{"format": "text", "result": "Customer asked about services and pricing."}},
		}, "meta": meta("operator_results")})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	f.URL = "http://" + ln.Addr().String()
	return f
}

type env struct {
	t     testing.TB
	g     *gateway.Gateway
	cfg   *config.Config
	recv  *receiver
	tw    *fakeTwilio
	base  string
	admin string
}

func quiet() *slog.Logger {
	if os.Getenv("RINGGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func start(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, recv: newReceiver(t), tw: newFakeTwilio(t)}
	y := fmt.Sprintf(`
server: {listen: "127.0.0.1:0", public_url: "https://calls.example.com", admin: {listen: "127.0.0.1:0", token: %q}}
storage: {path: %q}
twilio: {account_sid: %s, auth_token: %s, lookup_caller_name: true, intelligence_service_sid: GA0123456789abcdef0123456789abcdef}
delivery: {allow_http: true, allow_private_networks: true}
workspaces:
  - id: 1
    name: My Workspace
    block_list: [{number: "+15551234567", reason: spam}]
    campaigns:
      - id: 42
        name: Google Ads Campaign
        forward_to: "+15550001111"
        record: true
        voicemail: {enabled: true, transcribe: true}
        numbers:
          - {id: 1, number: "+18005551234", name: "Google Ads - Main"}
      - id: 43
        name: Organic
        forward_to: "+15550002222"
        numbers:
          - {id: 2, number: "+18005559999", name: "Website"}
    endpoints:
      - id: crm
        name: CRM
        url: %q
        events: [call.started, call.completed, call.missed, recording.available, transcription.available, lead.qualified, call.blocked, voicemail.received, voicemail.transcribed]
`, adminToken, t.TempDir(), account, authToken, e.recv.URL)
	base := &client.Client{Credentials: client.NewCredentials(account, authToken)}
	base.SetAccountSid(account)
	api := twilioapi.New(account, authToken, "GA0123456789abcdef0123456789abcdef", twilioapi.Redirect{BaseClient: base, Base: e.tw.URL})
	e.g, e.cfg = runGateway(t, y, gateway.Options{CallerNames: api, Transcripts: api})
	e.base, e.admin = "http://"+e.g.Addr(), "http://"+e.g.AdminAddr()
	return e
}

// testYAML is a config with loopback listeners, the test tokens and storage, followed by rest
// (delivery:, workspaces:, ...).
func testYAML(storage, rest string) string {
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0", public_url: "https://calls.example.com", admin: {listen: "127.0.0.1:0", token: %q}}
storage: %s
twilio: {auth_token: %s}
`, adminToken, storage, authToken) + rest
}

// runGateway parses y and runs a gateway on it until the test ends.
func runGateway(t testing.TB, y string, opt gateway.Options) (*gateway.Gateway, *config.Config) {
	t.Helper()
	cfg, err := config.Parse([]byte(y), "test.yaml", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if opt.Logger == nil {
		opt.Logger = quiet()
	}
	g, err := gateway.New(cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown(context.Background()) })
	return g, cfg
}

func (e *env) call(to, from, outcome string) string {
	e.t.Helper()
	sid, err := twiliosim.Run(twiliosim.Call{Config: e.cfg, Gateway: e.base, To: to, From: from, Outcome: outcome})
	if err != nil {
		e.t.Fatal(err)
	}
	return sid
}

func (e *env) post(path string, form url.Values) (int, string) {
	e.t.Helper()
	code, body, err := twiliosim.Post(e.cfg, e.base, path, form)
	if err != nil {
		e.t.Fatal(err)
	}
	return code, body
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// keyPaths lists an object's keys as dotted paths, in order.
func keyPaths(v any, prefix string) []string {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	var out []string
	for k, x := range m {
		out = append(out, prefix+k)
		out = append(out, keyPaths(x, prefix+k+".")...)
	}
	return out
}

func sameKeys(t *testing.T, typ string, got map[string]any) {
	t.Helper()
	sample, _ := events.Sample(typ, events.Workspace{ID: 1, Name: "x"}, time.Now())
	b, _ := sample.Marshal()
	var want map[string]any
	json.Unmarshal(b, &want)
	// visitor_session is null for calls that matched no visit; the sample has one.
	norm := func(paths []string) string {
		var keep []string
		for _, p := range paths {
			if !strings.HasPrefix(p, "data.visitor_session.") {
				keep = append(keep, p)
			}
		}
		sortStrings(keep)
		return strings.Join(keep, ",")
	}
	if g, w := norm(keyPaths(got, "")), norm(keyPaths(want, "")); g != w {
		t.Errorf("%s keys differ from the documented payload:\n got %s\nwant %s", typ, g, w)
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func data(m map[string]any) map[string]any { d, _ := m["data"].(map[string]any); return d }

// adminGet GETs path on the gateway's admin listener with the admin token, and reads the body.
func adminGet(t testing.TB, g *gateway.Gateway, path string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+g.AdminAddr()+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func (e *env) adminPost(path, body string) (int, map[string]any) {
	req, _ := http.NewRequest("POST", e.admin+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// Every event type from realistic callback sequences, each matching the documented payload key
// for key, with the values the callbacks carried.
func TestEveryEventFromCallbacks(t *testing.T) {
	e := start(t)
	answered := e.call("+18005551234", "+14155551234", "answered")
	eventually(t, "answered call events", func() bool {
		return len(e.recv.of(events.CallCompleted, answered)) == 1 && len(e.recv.of(events.RecordingAvailable, answered)) == 1
	})
	eventually(t, "transcript requested", func() bool { return e.tw.transcripts.Load() == 1 })
	e.tw.mu.Lock()
	if e.tw.customerKey != answered || !strings.Contains(e.tw.channel, `"source_sid":"RE`) {
		t.Errorf("transcript request: key %q channel %q", e.tw.customerKey, e.tw.channel)
	}
	e.tw.mu.Unlock()

	// Voice Intelligence says the transcript is done: a JSON callback signed with bodySHA256.
	body := []byte(`{"account_sid":"` + account + `","service_sid":"GA0123456789abcdef0123456789abcdef","transcript_sid":"GT0123456789abcdef0123456789abcdef","customer_key":"` + answered + `","event_type":"voice_intelligence_transcript_available"}`)
	sum := sha256.Sum256(body)
	path := "/twilio/intelligence?bodySHA256=" + hex.EncodeToString(sum[:])
	req, _ := http.NewRequest("POST", e.base+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Twilio-Signature", ingress.Sign(authToken, "https://calls.example.com"+path, nil))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("intelligence callback: %v %v", err, resp)
	}
	eventually(t, "transcription.available", func() bool { return len(e.recv.of(events.TranscriptionAvailable, answered)) == 1 })

	started := data(e.recv.of(events.CallStarted, answered)[0])
	id := started["call_log_id"].(float64)
	code, _ := e.adminPost(fmt.Sprintf("/api/v1/calls/%d/qualify", int(id)),
		`{"lead_status":"qualified","qualification_reason":"Wants the premium package","qualification_confidence":0.89,"deal_value":2500,"tags":["High Intent"]}`)
	if code != 200 {
		t.Fatalf("qualify: %d", code)
	}
	eventually(t, "lead.qualified", func() bool { return len(e.recv.of(events.LeadQualified, answered)) == 1 })

	vm := e.call("+18005551234", "+14155551234", "voicemail")
	blocked := e.call("+18005551234", "+15551234567", "blocked")
	eventually(t, "voicemail and blocked events", func() bool {
		return len(e.recv.of(events.VoicemailTranscribed, vm)) == 1 && len(e.recv.of(events.CallBlocked, "")) == 1
	})
	_ = blocked

	for _, typ := range events.Types {
		sid := answered
		switch typ {
		case events.CallMissed, events.VoicemailReceived, events.VoicemailTranscribed:
			sid = vm
		case events.CallBlocked:
			sid = ""
		}
		got := e.recv.of(typ, sid)
		if len(got) != 1 {
			t.Errorf("%s delivered %d times, want once", typ, len(got))
			continue
		}
		sameKeys(t, typ, got[0])
	}

	// Values come from the callbacks, the config and the REST answers.
	completed := data(e.recv.of(events.CallCompleted, answered)[0])
	for k, want := range map[string]any{
		"call_log_id": id, "from_number": "+14155551234", "caller_name": "JOHN SMITH", "tracking_number": "+18005551234",
		"tracking_number_name": "Google Ads - Main", "campaign_id": 42.0, "campaign_name": "Google Ads Campaign",
		"status": "completed", "duration": 42.0, "is_first_time_caller": true, "visitor_session": nil, "utm_source": nil,
	} {
		if fmt.Sprint(completed[k]) != fmt.Sprint(want) {
			t.Errorf("call.completed %s = %v, want %v", k, completed[k], want)
		}
	}
	if loc := completed["caller_location"].(map[string]any); loc["city"] != "SAN FRANCISCO" || loc["zip"] != "94103" {
		t.Errorf("caller_location %v", loc)
	}
	if started["status"] != "ringing" {
		t.Errorf("call.started status %v", started["status"])
	}
	rec := data(e.recv.of(events.RecordingAvailable, answered)[0])
	if u, _ := rec["recording_url"].(string); !strings.HasPrefix(u, "https://api.twilio.com/2010-04-01/Accounts/"+account+"/Recordings/RE") {
		t.Errorf("recording_url %v", rec["recording_url"])
	}
	tr := data(e.recv.of(events.TranscriptionAvailable, answered)[0])
	if tr["transcription"] != "Hi, I'm calling about your services. Sure, how can I help?" || tr["transcription_confidence"] != 0.95 ||
		tr["summary"] != "Customer asked about services and pricing." || tr["summarized_at"] == nil {
		t.Errorf("transcription.available %v", tr)
	}
	lead := data(e.recv.of(events.LeadQualified, answered)[0])
	if lead["lead_status"] != "qualified" || lead["deal_value"] != 2500.0 || lead["summary"] != "Customer asked about services and pricing." {
		t.Errorf("lead.qualified %v", lead)
	}
	missed := data(e.recv.of(events.CallMissed, vm)[0])
	if missed["status"] != "no-answer" || missed["is_first_time_caller"] != false {
		t.Errorf("call.missed %v", missed)
	}
	vmt := data(e.recv.of(events.VoicemailTranscribed, vm)[0])["voicemail"].(map[string]any)
	if vmt["duration"] != 15.0 || !strings.HasPrefix(vmt["transcription"].(string), "Hi, this is a simulated caller") {
		t.Errorf("voicemail.transcribed %v", vmt)
	}
	bl := data(e.recv.of(events.CallBlocked, "")[0])
	if bl["blocked_number"] != "+15551234567" || bl["block_reason"] != "spam" || bl["block_list_type"] != "workspace" ||
		bl["tracking_number"].(map[string]any)["friendly_name"] != "Google Ads - Main" {
		t.Errorf("call.blocked %v", bl)
	}
	// One lookup per new call (the blocked caller's name fills call.blocked's caller_name).
	if n := e.tw.lookups.Load(); n != 3 {
		t.Errorf("%d caller name lookups, want 3", n)
	}
}

// Callbacks arrive twice, out of order and late: each call still ends in exactly one terminal
// event, no event repeats, and a late status never moves the call backwards.
func TestCallbacksDuplicatedReorderedLate(t *testing.T) {
	e := start(t)
	sid := twiliosim.SID("CA")
	common := url.Values{"CallSid": {sid}, "AccountSid": {account}, "From": {"+14155550000"}, "To": {"+18005551234"}, "CallerName": {"Jane Caller"}}
	with := func(kv ...string) url.Values {
		v := url.Values{}
		for k, x := range common {
			v[k] = x
		}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	steps := []struct {
		path string
		form url.Values
	}{
		{"/twilio/voice", with("CallStatus", "ringing")},
		{"/twilio/voice", with("CallStatus", "ringing")},                                                 // Twilio retried
		{"/twilio/status", with("CallStatus", "completed", "SequenceNumber", "3", "CallDuration", "50")}, // before the dial action
		{"/twilio/status", with("CallStatus", "in-progress", "SequenceNumber", "2")},                     // late
		{"/twilio/dial", with("DialCallStatus", "completed", "DialCallDuration", "44", "DialBridged", "true")},
		{"/twilio/recording", with("RecordingSid", "RE1", "RecordingUrl", "https://api.twilio.com/r/RE1", "RecordingStatus", "completed", "RecordingSource", "DialVerb")},
		{"/twilio/dial", with("DialCallStatus", "no-answer")}, // a stale duplicate with another story
		{"/twilio/recording", with("RecordingSid", "RE1", "RecordingUrl", "https://api.twilio.com/r/RE1", "RecordingStatus", "completed", "RecordingSource", "DialVerb")},
		{"/twilio/status", with("CallStatus", "ringing", "SequenceNumber", "1")}, // very late
	}
	for _, s := range steps {
		if code, body := e.post(s.path, s.form); code >= 300 {
			t.Fatalf("%s: %d %s", s.path, code, body)
		}
	}
	eventually(t, "events", func() bool { return len(e.recv.of(events.RecordingAvailable, sid)) == 1 })
	time.Sleep(100 * time.Millisecond)
	for typ, want := range map[string]int{events.CallStarted: 1, events.CallCompleted: 1, events.CallMissed: 0, events.RecordingAvailable: 1} {
		if got := len(e.recv.of(typ, sid)); got != want {
			t.Errorf("%s delivered %d times, want %d", typ, got, want)
		}
	}
	if d := data(e.recv.of(events.CallCompleted, sid)[0]); d["duration"] != 44.0 || d["caller_name"] != "Jane Caller" {
		t.Errorf("call.completed %v", d)
	}
	req, _ := http.NewRequest("GET", e.admin+"/api/v1/calls", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Calls []struct {
			Status    string `json:"status"`
			StatusSeq int    `json:"status_seq"`
			Outcome   string `json:"outcome"`
		} `json:"calls"`
	}
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Calls) != 1 || list.Calls[0].Status != "completed" || list.Calls[0].StatusSeq != 3 || list.Calls[0].Outcome != "completed" {
		t.Fatalf("call after late callbacks: %+v", list.Calls)
	}
}

func TestBadCallbacksAreRefusedAndChangeNothing(t *testing.T) {
	e := start(t)
	form := url.Values{"CallSid": {twiliosim.SID("CA")}, "From": {"+14155550000"}, "To": {"+18005551234"}, "CallStatus": {"ringing"}}
	send := func(path, sig string, f url.Values) int {
		req, _ := http.NewRequest("POST", e.base+path, strings.NewReader(f.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if sig != "" {
			req.Header.Set("X-Twilio-Signature", sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	good := ingress.Sign(authToken, "https://calls.example.com/twilio/voice", form)
	tampered := url.Values{}
	for k, v := range form {
		tampered[k] = v
	}
	tampered.Set("From", "+14155559999")
	for name, c := range map[string]struct {
		sig  string
		form url.Values
	}{
		"missing":       {"", form},
		"forged":        {ingress.Sign("not-the-token", "https://calls.example.com/twilio/voice", form), form},
		"stale url":     {ingress.Sign(authToken, "https://old.example.com/twilio/voice", form), form},
		"other route":   {ingress.Sign(authToken, "https://calls.example.com/twilio/status", form), form},
		"tampered form": {good, tampered},
	} {
		if code := send("/twilio/voice", c.sig, c.form); code != 403 {
			t.Errorf("%s signature: %d, want 403", name, code)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if e.recv.count() != 0 {
		t.Fatalf("refused callbacks caused %d deliveries", e.recv.count())
	}
	// A port in the public URL's default form still verifies; so does the right signature.
	if code := send("/twilio/voice", ingress.Sign(authToken, "https://calls.example.com:443/twilio/voice", form), form); code != 200 {
		t.Errorf("signature over the URL with its default port: %d", code)
	}
	// Malformed: no CallSid.
	bad := url.Values{"From": {"+1415"}}
	if code := send("/twilio/voice", ingress.Sign(authToken, "https://calls.example.com/twilio/voice", bad), bad); code != 400 {
		t.Errorf("missing CallSid: %d, want 400", code)
	}
	// An unknown number: spoken message and hang-up, no events.
	unknown := url.Values{"CallSid": {twiliosim.SID("CA")}, "From": {"+14155550000"}, "To": {"+18009990000"}}
	code, body := e.post("/twilio/voice", unknown)
	if code != 200 || !strings.Contains(body, "<Say>") || !strings.Contains(body, "<Hangup") {
		t.Errorf("unknown number: %d %s", code, body)
	}
	// Callbacks for calls never seen: answered without retries, nothing stored.
	if code, _ := e.post("/twilio/status", url.Values{"CallSid": {"CAnever"}, "CallStatus": {"completed"}}); code != 204 {
		t.Errorf("status of an unknown call: %d", code)
	}
	if code, _ := e.post("/twilio/status", url.Values{"CallSid": {"CAx"}, "CallStatus": {"exploded"}}); code != 400 {
		t.Errorf("unknown status: %d", code)
	}
	if code, _ := e.post("/twilio/dial", url.Values{"CallSid": {"CAx"}, "DialCallStatus": {"0000"}}); code != 400 {
		t.Errorf("unknown dial status: %d", code)
	}
	// A SID that is not letters and digits is refused: one that is not UTF-8 was stored changed
	// by the call log's JSON, so every later callback of that call conflicted and got a 503
	// (FuzzCallbackForms).
	for _, sid := range []string{"CA\xa1", "CA 1", "CA/1", strings.Repeat("C", 65)} {
		if code, _ := e.post("/twilio/voice", url.Values{"CallSid": {sid}, "From": {"+14155550000"}, "To": {"+18005551234"}}); code != 400 {
			t.Errorf("CallSid %q: %d", sid, code)
		}
	}
	if code, _ := e.post("/twilio/recording", url.Values{"CallSid": {"CAx"}, "RecordingSid": {"RE\xa1"}}); code != 400 {
		t.Errorf("RecordingSid not UTF-8: %d", code)
	}
	// GET is not a callback.
	resp, _ := http.Get(e.base + "/twilio/voice")
	if resp.StatusCode != 405 {
		t.Errorf("GET: %d", resp.StatusCode)
	}
}

func TestAnonymousCaller(t *testing.T) {
	e := start(t)
	a := e.call("+18005559999", "anonymous", "answered")
	b := e.call("+18005559999", "anonymous", "answered")
	eventually(t, "both completed", func() bool {
		return len(e.recv.of(events.CallCompleted, a)) == 1 && len(e.recv.of(events.CallCompleted, b)) == 1
	})
	for _, sid := range []string{a, b} {
		d := data(e.recv.of(events.CallCompleted, sid)[0])
		if d["from_number"] != "anonymous" || d["is_first_time_caller"] != true || d["caller_name"] != nil {
			t.Errorf("anonymous caller payload %v", d)
		}
	}
	if n := e.tw.lookups.Load(); n != 0 {
		t.Errorf("anonymous callers were looked up %d times", n)
	}
	// The Organic campaign does not record: no recording event.
	if n := len(e.recv.of(events.RecordingAvailable, a)); n != 0 {
		t.Errorf("%d recordings for a campaign that does not record", n)
	}
}

// FuzzCallbackForms: any signed form on any Twilio route gets a clear answer (never a panic or a
// 5xx), through the real handler and store.
func FuzzCallbackForms(f *testing.F) {
	f.Add("/twilio/voice", "CallSid=CA1&From=%2B14155550000&To=%2B18005551234&CallStatus=ringing")
	f.Add("/twilio/dial", "CallSid=CA1&DialCallStatus=busy")
	f.Add("/twilio/status", "CallSid=CA1&CallStatus=completed&SequenceNumber=-4")
	f.Add("/twilio/recording", "CallSid=CA1&RecordingSid=RE1&RecordingStatus=completed")
	f.Add("/twilio/voicemail", "CallSid=CA1&RecordingUrl=x&RecordingDuration=99999999999999999999")
	f.Add("/twilio/transcription", "CallSid=CA1&TranscriptionStatus=completed&TranscriptionText=%00%ff")
	f.Add("/twilio/voice", "CallSid=CA2&CallSid=CA3&To=%2B18005551234&To=%2B1")
	e := start(f)
	f.Fuzz(func(t *testing.T, path, body string) {
		if !strings.HasPrefix(path, "/twilio/") || strings.ContainsAny(path, "?# \r\n") || path == "/twilio/intelligence" {
			return
		}
		form, err := url.ParseQuery(body)
		if err != nil {
			return
		}
		code, _, err := twiliosim.Post(e.cfg, e.base, path, form)
		if err != nil {
			t.Skip(err) // the URL itself could not be sent
		}
		if code >= 500 {
			t.Fatalf("%s %q: %d", path, body, code)
		}
	})
}

// Paths under /twilio/ that are not routes get a 404 and are counted as "other": a path that is
// not UTF-8 once panicked the metrics registry and took the process down (FuzzCallbackForms),
// and every distinct path would have been a new series.
func TestUnknownTwilioPathsAreCountedAsOther(t *testing.T) {
	e := start(t)
	raw := func(path string) string {
		c, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 9\r\nConnection: close\r\n\r\nCallSid=1", path)
		b, _ := io.ReadAll(c)
		line, _, _ := strings.Cut(string(b), "\r\n")
		return line
	}
	for i := 0; i < 20; i++ {
		if line := raw(fmt.Sprintf("/twilio/s\xf1\xf1tatus%d", i)); !strings.Contains(line, " 404 ") {
			t.Fatalf("got %q", line)
		}
	}
	e.call("+18005551234", "+14155550111", "answered") // the process is still there
	_, b := adminGet(t, e.g, "/metrics")
	var routes []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "ringgate_twilio_callbacks_total{") {
			routes = append(routes, l)
		}
	}
	joined := strings.Join(routes, "\n")
	if !strings.Contains(joined, `route="other"`) || !strings.Contains(joined, `route="voice"`) || strings.Contains(joined, "tatus0") {
		t.Fatalf("callback series:\n%s\n(metrics: %.300s)", joined, b)
	}
}

package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/ringgate/ringgate/gateway/events"
	"gopkg.in/yaml.v3"
)

// MaxFileSize caps the config file; anything larger is surely a mistake.
const MaxFileSize = 4 << 20

// Load reads, expands, decodes and validates a config file. On failure the error is Errors:
// every problem in the file, each with its line and column.
func Load(file string) (*Config, error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, Errors{{File: file, Msg: err.Error()}}
	}
	if st.Size() > MaxFileSize {
		return nil, Errors{{File: file, Msg: fmt.Sprintf("file is %d bytes; the limit is %d", st.Size(), MaxFileSize)}}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, Errors{{File: file, Msg: err.Error()}}
	}
	return Parse(data, file, os.LookupEnv)
}

// Parse decodes and validates config bytes; file names them in errors; lookup reads the
// environment (os.LookupEnv in production).
func Parse(data []byte, file string, lookup func(string) (string, bool)) (*Config, error) {
	if file == "" {
		file = "config"
	}
	cfg := &Config{File: file}
	applyDefaults(reflect.ValueOf(cfg).Elem())
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Errors{syntaxError(file, err)}
	}
	if len(root.Content) == 0 {
		return nil, Errors{{File: file, Line: 1, Col: 1, Msg: "the file is empty"}}
	}
	d := &decoder{file: file, lookup: lookup, where: map[string]pos{}, failed: map[string]bool{}}
	d.decode(&root, reflect.ValueOf(cfg).Elem(), "")
	v := validator{d: d, cfg: cfg}
	v.validate()
	if len(d.errs) > 0 {
		return nil, sortErrors(d.errs)
	}
	cfg.where = d.where
	return cfg, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblems are yaml.v3's parser (not scanner) errors: for these it reports the 0-based
// line where the enclosing block or flow collection starts, so one is added.
var parserProblems = []string{
	"did not find expected <block end>", "did not find expected '-' indicator", "did not find expected key",
	"did not find expected ',' or '}'", "did not find expected ',' or ']'", "did not find expected node content",
}

func syntaxError(file string, err error) Error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		var line int
		fmt.Sscan(m[1], &line)
		for _, p := range parserProblems {
			if m[2] == p {
				line++
				m[2] += " (in the block or collection starting here)"
				break
			}
		}
		return Error{File: file, Line: line, Col: 1, Msg: "syntax: " + m[2]}
	}
	return Error{File: file, Msg: "syntax: " + strings.TrimPrefix(msg, "yaml: ")}
}

// maxErrors caps the problems listed for one file.
const maxErrors = 100

func sortErrors(es Errors) Errors {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Line != es[j].Line {
			return es[i].Line < es[j].Line
		}
		return es[i].Col < es[j].Col
	})
	if len(es) > maxErrors {
		more := len(es) - maxErrors
		es = append(es[:maxErrors], Error{File: es[0].File, Msg: fmt.Sprintf("and %d more problems", more)})
	}
	return es
}

type validator struct {
	d   *decoder
	cfg *Config
}

// at reports a problem with the value at path.
func (v *validator) at(path, format string, args ...any) {
	if v.d.failed[path] {
		return // already reported by the decoder
	}
	v.d.errs = append(v.d.errs, errorAt(v.d.file, v.d.where, path, fmt.Sprintf(format, args...)))
}

// errorAt is a problem with the value at path, pointing at it when the file set it and at the
// nearest enclosing value otherwise.
func errorAt(file string, where map[string]pos, path, msg string) Error {
	p := path
	for {
		if w, ok := where[p]; ok {
			return Error{File: file, Line: w.line, Col: w.col, Msg: display(path) + ": " + msg}
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			if p == "" {
				return Error{File: file, Line: 1, Col: 1, Msg: display(path) + ": " + msg}
			}
			p = ""
			continue
		}
		p = p[:i]
	}
}

// ErrorAt is a problem found after loading (a transform that does not compile, say) with the
// value at path ("workspaces[0].endpoints[1].transform.module"), pointing at it in the file.
func (c *Config) ErrorAt(path, msg string) Error { return errorAt(c.File, c.where, path, msg) }

var (
	endpointIDRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	e164Re       = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	alnumRe      = regexp.MustCompile(`^[A-Za-z0-9]+$`)
)

// ReservedHeader reports whether name is set by the gateway itself (Signature, Content-Length,
// Host, User-Agent, Content-Type, Connection, Transfer-Encoding and webhook-*), in any case:
// neither config nor transforms may set them. A transform's every header passes here, so it
// lower-cases into an array (strings.ToLower allocates) and compares without hashing.
func ReservedHeader(name string) bool {
	if name == "" {
		return false
	}
	switch name[0] | 0x20 { // lower-cases an ASCII letter; what lower-cases to none of these starts none
	case 's', 'c', 'h', 'u', 't', 'w':
	default:
		return false
	}
	var buf [64]byte
	if len(name) > len(buf) || !isASCII(name) {
		return reservedLower(strings.ToLower(name))
	}
	l := buf[:len(name)]
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		l[i] = c
	}
	return reservedLower(string(l))
}

func reservedLower(l string) bool {
	switch l {
	case "signature", "content-length", "host", "user-agent", "content-type", "connection", "transfer-encoding":
		return true
	}
	return strings.HasPrefix(l, "webhook-")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// MaxTransformKey bounds the keys of transform.config: a guest looks them up with config_get,
// which refuses longer keys without reading them.
const MaxTransformKey = 256

// ValidHeaderName reports whether name is an HTTP header field name (a token, RFC 9110). It is
// called for every header a transform sets, so it is a loop rather than a regular expression.
func ValidHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// sourceKeys are the attribution fields a campaign's source may match on.
var sourceKeys = map[string]bool{
	"utm_source": true, "utm_medium": true, "utm_campaign": true, "utm_term": true, "utm_content": true,
	"gclid": true, "gbraid": true, "wbraid": true, "fbclid": true, "msclkid": true, "ttclid": true,
	"li_fat_id": true, "referrer": true,
}

func (v *validator) jetstream(j *JetStream) {
	const at = "storage.jetstream"
	if j.Embedded == (len(j.URLs) > 0) {
		v.at(at, "set either urls (connect to NATS servers) or embedded: true (run one inside ringgate)")
	}
	for i, u := range j.URLs {
		if pu, err := url.Parse(u); err != nil || pu.Host == "" {
			v.at(fmt.Sprintf("%s.urls[%d]", at, i), "%q is not a URL like nats://host:4222", u)
		}
	}
	if j.Replicas < 1 || j.Replicas > 5 {
		v.at(at+".replicas", "must be 1 to 5, not %d", j.Replicas)
	}
	if j.Lease < time.Second || j.Lease > time.Hour {
		v.at(at+".lease", "must be between 1s and 1h, not %s", j.Lease)
	}
	if (j.TLS.Cert == "") != (j.TLS.Key == "") {
		v.at(at+".tls", "cert and key go together")
	}
	if !j.Embedded {
		return
	}
	if j.Listen != "" {
		v.listen(at+".listen", j.Listen)
	}
	if j.ClusterListen != "" {
		v.listen(at+".cluster_listen", j.ClusterListen)
	} else if len(j.Routes) > 0 {
		v.at(at+".routes", "need cluster_listen: where the other nodes reach this one")
	}
	for i, r := range j.Routes {
		if pu, err := url.Parse(r); err != nil || pu.Scheme != "nats" || pu.Host == "" {
			v.at(fmt.Sprintf("%s.routes[%d]", at, i), "%q is not a route like nats://node2:6222", r)
		}
	}
	if j.Replicas > 1 && j.ClusterListen == "" {
		v.at(at+".replicas", "%d replicas need a cluster (cluster_listen and routes)", j.Replicas)
	}
}

func (v *validator) validate() {
	c := v.cfg
	v.listen("server.listen", c.Server.Listen)
	if c.Server.PublicURL == "" {
		v.at("server.public_url", "is required: the URL Twilio calls, e.g. https://calls.example.com")
	} else if u, err := url.Parse(c.Server.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
		v.at("server.public_url", "%q must be an absolute http(s) URL without a query", c.Server.PublicURL)
	}
	v.listen("server.admin.listen", c.Server.Admin.Listen)
	if len(c.Server.Admin.Token) < 16 {
		v.at("server.admin.token", "must be at least 16 characters")
	}
	if c.Server.Admin.Listen == c.Server.Listen && !strings.HasSuffix(c.Server.Listen, ":0") {
		v.at("server.admin.listen", "must differ from server.listen")
	}
	for i, t := range c.Server.TrustedProxies {
		if _, ok := parsePrefix(t); !ok {
			v.at(fmt.Sprintf("server.trusted_proxies[%d]", i), "%q is not an address or a CIDR range like 10.0.0.0/8", t)
		}
	}
	switch c.Storage.Backend {
	case "badger":
	case "jetstream":
		v.jetstream(&c.Storage.JetStream)
	default:
		v.at("storage.backend", "%q is not a backend; use badger or jetstream", c.Storage.Backend)
	}
	if c.Storage.Path == "" {
		v.at("storage.path", "is required")
	}
	if c.Twilio.AuthToken == "" {
		v.at("twilio.auth_token", "is required: it checks X-Twilio-Signature")
	}
	if s := c.Twilio.AccountSID; s != "" && !strings.HasPrefix(s, "AC") {
		v.at("twilio.account_sid", "%q does not look like an account SID (AC...)", s)
	}
	if c.Twilio.LookupCallerName || c.Twilio.IntelligenceServiceSID != "" {
		if c.Twilio.AccountSID == "" {
			v.at("twilio.account_sid", "is required for lookup_caller_name and intelligence_service_sid (REST calls)")
		}
		if !alnumRe.MatchString(c.Twilio.AuthToken) {
			v.at("twilio.auth_token", "must be letters and digits for REST calls (a Twilio auth token is 32 hex characters)")
		}
	}
	if s := c.Twilio.IntelligenceServiceSID; s != "" && !strings.HasPrefix(s, "GA") {
		v.at("twilio.intelligence_service_sid", "%q does not look like a Voice Intelligence service SID (GA...)", s)
	}
	v.delivery()
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.at("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		v.at("log.format", "%q is not text or json", c.Log.Format)
	}
	v.workspaces()
}

func (v *validator) listen(path, addr string) {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		v.at(path, "%q is not host:port", addr)
	}
}

func (v *validator) delivery() {
	d := v.cfg.Delivery
	if d.Timeout <= 0 || d.Timeout > 5*time.Minute {
		v.at("delivery.timeout", "must be between 1ms and 5m")
	}
	if len(d.RetrySchedule) > 20 {
		v.at("delivery.retry_schedule", "has %d entries; at most 20", len(d.RetrySchedule))
	}
	for i, r := range d.RetrySchedule {
		if r < time.Second || r > 72*time.Hour {
			v.at(fmt.Sprintf("delivery.retry_schedule[%d]", i), "must be between 1s and 72h")
		}
	}
	if d.RetryJitter < 0 || d.RetryJitter > 1 {
		v.at("delivery.retry_jitter", "must be between 0 and 1")
	}
	if d.BreakerThreshold < 1 {
		v.at("delivery.breaker_threshold", "must be at least 1")
	}
	if d.LogRetention < time.Hour {
		v.at("delivery.log_retention", "must be at least 1h")
	}
	if d.MaxInFlight < 1 || d.MaxInFlight > 1024 {
		v.at("delivery.max_in_flight", "must be between 1 and 1024")
	}
}

// unique holds what must be unique across all workspaces, as the validator meets it.
type unique struct {
	workspaces, campaigns map[int64]bool
	numbers               map[string]string // a tracking number -> where it was first set
	endpoints             map[string]bool
}

func (v *validator) workspaces() {
	u := unique{map[int64]bool{}, map[int64]bool{}, map[string]string{}, map[string]bool{}}
	for wi, w := range v.cfg.Workspaces {
		wp := fmt.Sprintf("workspaces[%d]", wi)
		v.idAndName(wp, "workspace", w.ID, w.Name, u.workspaces)
		for oi, o := range w.Tracker.AllowedOrigins {
			if ou, err := url.Parse(o); err != nil || (ou.Scheme != "https" && ou.Scheme != "http") || ou.Host == "" || (ou.Path != "" && ou.Path != "/") {
				v.at(fmt.Sprintf("%s.tracker.allowed_origins[%d]", wp, oi), "%q is not an origin like https://example.com", o)
			}
		}
		if w.Tracker.SessionHold < time.Minute {
			v.at(wp+".tracker.session_hold", "must be at least 1m")
		}
		if w.Tracker.NewSessionsPerMinute < 0 {
			v.at(wp+".tracker.new_sessions_per_minute", "must be 0 (no limit) or more")
		}
		v.blocks(wp+".block_list", w.BlockList)
		for ci, cp := range w.Campaigns {
			v.campaign(fmt.Sprintf("%s.campaigns[%d]", wp, ci), cp, &u)
		}
		for ei, e := range w.Endpoints {
			ep := fmt.Sprintf("%s.endpoints[%d]", wp, ei)
			v.endpoint(ep, e, &u)
			for ci, id := range e.Campaigns {
				if w.Campaign(id) == nil {
					v.at(fmt.Sprintf("%s.campaigns[%d]", ep, ci), "%d is not a campaign of this workspace", id)
				}
			}
		}
	}
}

// idAndName checks a workspace's or a campaign's id (positive, unique) and name (set).
func (v *validator) idAndName(path, what string, id int64, name string, seen map[int64]bool) {
	if id < 1 {
		v.at(path+".id", "must be a positive integer")
	} else if seen[id] {
		v.at(path+".id", "%s %d is defined twice", what, id)
	}
	seen[id] = true
	if strings.TrimSpace(name) == "" {
		v.at(path+".name", "is required")
	}
}

func (v *validator) campaign(cpath string, cp Campaign, u *unique) {
	v.idAndName(cpath, "campaign", cp.ID, cp.Name, u.campaigns)
	v.e164(cpath+".forward_to", cp.ForwardTo)
	if cp.DialTimeout < 5*time.Second || cp.DialTimeout > 600*time.Second {
		v.at(cpath+".dial_timeout", "must be between 5s and 600s")
	}
	if cp.Voicemail.Transcribe && !cp.Voicemail.Enabled {
		v.at(cpath+".voicemail.transcribe", "needs voicemail.enabled: true")
	}
	for k := range cp.Source {
		if !sourceKeys[k] {
			v.at(cpath+".source."+k, "%q is not an attribution field (utm_*, click ids, referrer)", k)
		}
	}
	for si, s := range cp.SwapNumbers {
		v.e164(fmt.Sprintf("%s.swap_numbers[%d]", cpath, si), s)
	}
	v.blocks(cpath+".block_list", cp.BlockList)
	if len(cp.Numbers) == 0 {
		v.at(cpath+".numbers", "a campaign needs at least one tracking number")
	}
	numIDs := map[int64]bool{}
	for ni, n := range cp.Numbers {
		np := fmt.Sprintf("%s.numbers[%d]", cpath, ni)
		if n.ID < 1 {
			v.at(np+".id", "must be a positive integer")
		} else if numIDs[n.ID] {
			v.at(np+".id", "number id %d is used twice in this campaign", n.ID)
		}
		numIDs[n.ID] = true
		if v.e164(np+".number", n.Number) {
			if prev, dup := u.numbers[n.Number]; dup {
				v.at(np+".number", "%s is already a tracking number at %s", n.Number, prev)
			}
			u.numbers[n.Number] = np
		}
	}
}

func (v *validator) endpoint(ep string, e Endpoint, u *unique) {
	if !endpointIDRe.MatchString(e.ID) {
		v.at(ep+".id", "%q must be 1 to 64 letters, digits, '.', '_' or '-'", e.ID)
	} else if u.endpoints[e.ID] {
		v.at(ep+".id", "endpoint %q is defined twice", e.ID)
	}
	u.endpoints[e.ID] = true
	v.endpointURL(ep+".url", e.URL)
	if e.Timeout < 0 || e.Timeout > 5*time.Minute {
		v.at(ep+".timeout", "must be between 1ms and 5m (0: delivery.timeout)")
	}
	if e.RateLimit < 0 || e.RateLimit > 100000 {
		v.at(ep+".rate_limit", "must be between 0 (no limit) and 100000 attempts a second")
	}
	if len(e.Events) == 0 {
		v.at(ep+".events", "subscribe to at least one event: %s", strings.Join(events.Types, ", "))
	}
	seen := map[string]bool{}
	for i, name := range e.Events {
		if !events.Known(name) {
			v.at(fmt.Sprintf("%s.events[%d]", ep, i), "%q is not an event (events: %s)", name, strings.Join(events.Types, ", "))
		} else if seen[name] {
			v.at(fmt.Sprintf("%s.events[%d]", ep, i), "%q is listed twice", name)
		}
		seen[name] = true
	}
	if e.Secret != "" {
		if _, err := SecretKey(e.Secret); err != nil {
			v.at(ep+".secret", "%v", err)
		}
	}
	for name, val := range e.Headers {
		hp := ep + ".headers." + name
		switch {
		case !ValidHeaderName(name):
			v.at(hp, "%q is not a valid header name", name)
		case ReservedHeader(name):
			v.at(hp, "%q is set by ringgate and cannot be overridden", name)
		case strings.ContainsAny(val, "\r\n"):
			v.at(hp, "header values cannot contain line breaks")
		}
	}
	if e.Transform != nil {
		v.transform(ep+".transform", e.Transform)
	}
}

// transform checks an endpoint's transform, and makes a relative module path relative to the
// config file's directory (t is the config's own).
func (v *validator) transform(tp string, t *Transform) {
	if t.Module == "" {
		v.at(tp+".module", "is required")
	} else {
		if !filepath.IsAbs(t.Module) && v.cfg.File != "config" {
			t.Module = filepath.Join(filepath.Dir(v.cfg.File), t.Module)
		}
		if st, err := os.Stat(t.Module); err != nil {
			v.at(tp+".module", "%s: %v (build the examples with make plugins)", t.Module, errors.Unwrap(err))
		} else if st.IsDir() {
			v.at(tp+".module", "%s is a directory, not a .wasm file", t.Module)
		}
	}
	if t.Timeout < time.Millisecond || t.Timeout > 10*time.Second {
		v.at(tp+".timeout", "must be between 1ms and 10s")
	}
	if t.MemoryLimit < 64<<10 || t.MemoryLimit > 4<<30 {
		v.at(tp+".memory_limit", "must be between 64KiB and 4GiB")
	}
	for k := range t.Config {
		if k == "" || len(k) > MaxTransformKey {
			v.at(tp+".config", "key %.40q: keys are 1 to %d bytes (what config_get reads)", k, MaxTransformKey)
		}
	}
}

func (v *validator) blocks(path string, bl []Block) {
	for i, b := range bl {
		v.e164(fmt.Sprintf("%s[%d].number", path, i), b.Number)
	}
}

func (v *validator) e164(path, n string) bool {
	if !e164Re.MatchString(n) {
		v.at(path, "%q is not an E.164 number like +15551234567", n)
		return false
	}
	return true
}

func (v *validator) endpointURL(path, raw string) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		v.at(path, "%q is not an absolute URL", raw)
		return
	}
	if u.User != nil {
		v.at(path, "credentials in the URL are not allowed; use headers")
	}
	if u.Scheme == "http" && !v.cfg.Delivery.AllowHTTP {
		v.at(path, "%q must use https (set delivery.allow_http: true for local testing)", raw)
	}
	if ip, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil && !v.cfg.Delivery.AllowPrivateNetworks {
		if reason := ForbiddenAddr(ip); reason != "" {
			v.at(path, "%s is a %s address (set delivery.allow_private_networks: true for local testing)", ip, reason)
		}
	}
}

// SecretKey returns the Standard Webhooks key of a whsec_ secret: the base64-decoded part after
// the prefix.
func SecretKey(secret string) ([]byte, error) {
	body, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return nil, errors.New("must start with whsec_ followed by base64")
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(body); err == nil && len(k) >= 16 {
			return k, nil
		}
	}
	return nil, errors.New("must be whsec_ followed by the base64 of at least 16 bytes")
}

// ForbiddenAddr says why an endpoint may not be dialled at ip ("" when it may): loopback,
// private, link-local (which holds cloud metadata at 169.254.169.254), CGNAT and the like.
func ForbiddenAddr(ip netip.Addr) string {
	ip = ip.Unmap()
	switch {
	case ip.IsLoopback():
		return "loopback"
	case ip.IsPrivate():
		return "private"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return "link-local"
	case ip.IsUnspecified():
		return "unspecified"
	case ip.IsMulticast(), ip.IsInterfaceLocalMulticast():
		return "multicast"
	}
	for _, p := range forbiddenPrefixes {
		if p.prefix.Contains(ip) {
			return p.reason
		}
	}
	return ""
}

var forbiddenPrefixes = []struct {
	prefix netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT"},
	{netip.MustParsePrefix("0.0.0.0/8"), "reserved"},
	{netip.MustParsePrefix("192.0.0.0/24"), "reserved"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("fd00:ec2::254/128"), "cloud metadata"},
	{netip.MustParsePrefix("64:ff9b::/96"), "NAT64"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "NAT64"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
}

// Package config is ringgate's YAML schema: the types, their defaults and examples (in struct tags,
// one place), ${ENV} expansion, and validation that reports every problem as FILE:LINE:COL.
package config

import (
	"net/netip"
	"time"
)

// Config is the whole file. Each field's `default` tag is YAML decoded by the same decoder as the
// file, so defaults and documentation cannot drift apart.
type Config struct {
	Server     Server      `yaml:"server" doc:"Listeners and the public URL Twilio calls."`
	Storage    Storage     `yaml:"storage" doc:"Where state lives."`
	Twilio     Twilio      `yaml:"twilio" doc:"Twilio account credentials."`
	Delivery   Delivery    `yaml:"delivery" doc:"Webhook delivery: timeouts, retries, breaker, retention."`
	Log        Log         `yaml:"log" doc:"Structured logging."`
	Workspaces []Workspace `yaml:"workspaces" doc:"Tenants: each with its campaigns, numbers and endpoints."`

	// File is the path the config was read from ("" when parsed from bytes without a name).
	File string `yaml:"-"`
	// where is where in File each value was set (see ErrorAt).
	where map[string]pos
}

type Server struct {
	Listen    string `yaml:"listen" default:"127.0.0.1:8080" example:"0.0.0.0:8080" doc:"Public listener: Twilio callbacks, the tracker script, sessions."`
	PublicURL string `yaml:"public_url" example:"https://calls.example.com" doc:"The URL Twilio calls; used to check X-Twilio-Signature and to build TwiML callback URLs."`
	Admin     Admin  `yaml:"admin" doc:"The operator's listener."`
	// TrustedProxies: see TrustedPrefixes.
	TrustedProxies []string `yaml:"trusted_proxies" example:"[127.0.0.1, 10.0.0.0/8]" doc:"Addresses or CIDR ranges of the proxies in front of the public listener: their X-Forwarded-For names the visitor, whose address the tracker's limit then counts."`
}

// TrustedPrefixes returns trusted_proxies as prefixes, a bare address as a one-address prefix
// (validation has refused any other entry).
func (s *Server) TrustedPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, t := range s.TrustedProxies {
		if p, ok := parsePrefix(t); ok {
			out = append(out, p)
		}
	}
	return out
}

func parsePrefix(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

type Admin struct {
	Listen        string `yaml:"listen" default:"127.0.0.1:8081" doc:"Admin listener: REST API, dashboard, metrics."`
	Token         string `yaml:"token" example:"${RINGGATE_ADMIN_TOKEN}" doc:"Bearer token for the admin API (at least 16 characters)."`
	MetricsPublic bool   `yaml:"metrics_public" default:"false" doc:"Serve /metrics without the token."`
}

type Storage struct {
	Backend   string    `yaml:"backend" default:"badger" doc:"badger (embedded, one node) or jetstream (NATS JetStream: one node or a cluster)."`
	Path      string    `yaml:"path" default:"./data" doc:"Data directory: the Badger store, the embedded NATS server's JetStream files, the WebAssembly compilation cache."`
	JetStream JetStream `yaml:"jetstream" doc:"The jetstream backend: connect to NATS servers (urls), or run one inside ringgate (embedded)."`
}

type JetStream struct {
	URLs          []string      `yaml:"urls" example:"[nats://nats1:4222, nats://nats2:4222, nats://nats3:4222]" doc:"NATS servers to connect to; not with embedded."`
	Credentials   string        `yaml:"credentials" example:"/etc/ringgate/nats.creds" doc:"NATS credentials file (JWT and NKey) for urls."`
	TLS           NATSTLS       `yaml:"tls" doc:"TLS to the NATS servers of urls."`
	Replicas      int           `yaml:"replicas" default:"1" doc:"Replicas of every stream and bucket: 1 for one node, 3 for a three-node cluster (survives one node's loss)."`
	Embedded      bool          `yaml:"embedded" default:"false" doc:"Run a NATS server with JetStream inside ringgate; nodes that list one another in routes form a cluster."`
	Name          string        `yaml:"name" example:"node1" doc:"This node's name in the cluster (embedded; unique per node; default: the host name)."`
	Listen        string        `yaml:"listen" example:"127.0.0.1:4222" doc:"Client listener of the embedded server, for the nats CLI (empty: in-process only)."`
	ClusterListen string        `yaml:"cluster_listen" example:"0.0.0.0:6222" doc:"Where the embedded server takes routes from the other nodes (empty: a lone node)."`
	ClusterName   string        `yaml:"cluster_name" default:"ringgate" doc:"The cluster's name, the same on every node."`
	Routes        []string      `yaml:"routes" example:"[nats://node2:6222, nats://node3:6222]" doc:"The other nodes' cluster_listen addresses."`
	Lease         time.Duration `yaml:"lease" default:"30s" doc:"How long deliveries a node has fetched stay with it once it stops answering, before the other nodes take them over (live nodes renew their lease)."`
}

type NATSTLS struct {
	CA   string `yaml:"ca" example:"/etc/ringgate/nats-ca.pem" doc:"CA certificate that signed the servers' certificates."`
	Cert string `yaml:"cert" example:"/etc/ringgate/nats-client.pem" doc:"Client certificate, when the servers ask for one."`
	Key  string `yaml:"key" example:"/etc/ringgate/nats-client-key.pem" doc:"The client certificate's key."`
}

type Twilio struct {
	AccountSID             string `yaml:"account_sid" example:"${TWILIO_ACCOUNT_SID}" doc:"Twilio account SID (AC...); needed for REST calls (caller name lookup, Voice Intelligence)."`
	AuthToken              string `yaml:"auth_token" example:"${TWILIO_AUTH_TOKEN}" doc:"Auth token: checks X-Twilio-Signature and authenticates REST calls."`
	LookupCallerName       bool   `yaml:"lookup_caller_name" default:"false" doc:"When Twilio sends no CallerName, ask Lookup v2 for it (billed by Twilio)."`
	IntelligenceServiceSID string `yaml:"intelligence_service_sid" example:"GA0123456789abcdef0123456789abcdef" doc:"Voice Intelligence service: when set, call recordings are transcribed and transcription.available is sent."`
}

type Delivery struct {
	Timeout              time.Duration   `yaml:"timeout" default:"10s" doc:"Time for one attempt: connect, send, read the response."`
	RetrySchedule        []time.Duration `yaml:"retry_schedule" default:"[30s, 5m, 30m]" doc:"Delay before each retry; its length is the number of retries."`
	RetryJitter          float64         `yaml:"retry_jitter" default:"0.2" doc:"Each retry delay is varied by up to this fraction either way (0 to 1)."`
	MaxRetryAfter        time.Duration   `yaml:"max_retry_after" default:"1h" doc:"A receiver's Retry-After may lengthen a retry delay up to this bound."`
	BreakerThreshold     int             `yaml:"breaker_threshold" default:"10" doc:"Consecutive failed deliveries that disable an endpoint."`
	LogRetention         time.Duration   `yaml:"log_retention" default:"720h" doc:"How long finished delivery records and attempts are kept."`
	MaxInFlight          int             `yaml:"max_in_flight" default:"32" doc:"Concurrent attempts per endpoint (on each node of a cluster: the rate_limit is what the nodes share); a slow receiver cannot take more."`
	AllowHTTP            bool            `yaml:"allow_http" default:"false" doc:"Accept http:// endpoint URLs (local testing only)."`
	AllowPrivateNetworks bool            `yaml:"allow_private_networks" default:"false" doc:"Allow endpoints on loopback, private, link-local and metadata addresses (local testing only)."`
}

type Log struct {
	Level  string `yaml:"level" default:"info" doc:"debug, info, warn or error."`
	Format string `yaml:"format" default:"text" doc:"text or json."`
}

type Workspace struct {
	ID        int64      `yaml:"id" example:"1" doc:"Workspace id (positive integer, unique); the tracker's ?w= value."`
	Name      string     `yaml:"name" example:"My Workspace" doc:"Shown in payloads as workspace.name."`
	Tracker   Tracker    `yaml:"tracker" doc:"The website tracker script."`
	BlockList []Block    `yaml:"block_list" doc:"Callers rejected for every campaign of the workspace."`
	Campaigns []Campaign `yaml:"campaigns" doc:"Campaigns with their tracking numbers."`
	Endpoints []Endpoint `yaml:"endpoints" doc:"Webhook receivers of this workspace's events."`
}

type Tracker struct {
	AllowedOrigins       []string      `yaml:"allowed_origins" example:"[https://example.com]" doc:"Origins allowed to create sessions."`
	SessionHold          time.Duration `yaml:"session_hold" default:"30m" doc:"How long a visitor keeps a pool number without a heartbeat."`
	NewSessionsPerMinute int           `yaml:"new_sessions_per_minute" default:"60" doc:"New sessions one visitor address may start a minute (heartbeats do not count; IPv6 counts by /64); past it the script gets a 429 and the page keeps its own numbers. Behind a proxy, set server.trusted_proxies. A cluster's nodes share it. 0: no limit."`
}

type Block struct {
	Number string `yaml:"number" example:"+15551234567" doc:"E.164 caller number."`
	Reason string `yaml:"reason" example:"spam" doc:"Reported as block_reason."`
}

type Campaign struct {
	ID          int64             `yaml:"id" example:"42" doc:"Campaign id (positive integer, unique in the file)."`
	Name        string            `yaml:"name" example:"Google Ads Campaign" doc:"Reported as campaign_name."`
	ForwardTo   string            `yaml:"forward_to" example:"+15550001111" doc:"E.164 number calls are forwarded to."`
	DialTimeout time.Duration     `yaml:"dial_timeout" default:"30s" doc:"How long the forward rings before it counts as missed (5s to 600s)."`
	Record      bool              `yaml:"record" default:"false" doc:"Record forwarded calls."`
	Voicemail   Voicemail         `yaml:"voicemail" doc:"Voicemail when the forward is missed."`
	Source      map[string]string `yaml:"source" example:"{utm_source: google, utm_medium: cpc}" doc:"Visits this campaign's pool serves; omitted: any visit."`
	SwapNumbers []string          `yaml:"swap_numbers" example:"[+15550001111]" doc:"Numbers on the website replaced by a pool number."`
	BlockList   []Block           `yaml:"block_list" doc:"Callers rejected for this campaign only."`
	Numbers     []Number          `yaml:"numbers" doc:"Tracking numbers."`
}

type Voicemail struct {
	Enabled    bool `yaml:"enabled" default:"false" doc:"Offer voicemail when the forward is missed."`
	Transcribe bool `yaml:"transcribe" default:"false" doc:"Ask Twilio to transcribe voicemails."`
}

type Number struct {
	ID     int64  `yaml:"id" example:"1" doc:"Number id (positive integer)."`
	Number string `yaml:"number" example:"+18005551234" doc:"E.164 tracking number (unique in the file)."`
	Name   string `yaml:"name" example:"Google Ads - Main" doc:"Reported as tracking_number_name."`
	Pool   bool   `yaml:"pool" default:"false" doc:"Part of the campaign's dynamic pool."`
}

type Endpoint struct {
	ID        string            `yaml:"id" example:"ghl" doc:"Endpoint id: letters, digits, '.', '_' or '-', unique in the file."`
	Name      string            `yaml:"name" example:"GoHighLevel Integration" doc:"A friendly name."`
	URL       string            `yaml:"url" example:"https://services.leadconnectorhq.com/hooks/ID/webhook-trigger/ID" doc:"HTTPS URL that receives POSTs."`
	Events    []string          `yaml:"events" example:"[call.completed, call.missed]" doc:"Event types delivered to this endpoint."`
	Campaigns []int64           `yaml:"campaigns" example:"[42]" doc:"Only the events of these campaigns (ids in this workspace); omitted: every campaign."`
	Secret    string            `yaml:"secret" example:"${GHL_WEBHOOK_SECRET}" doc:"whsec_ + base64 signing secret; generated and stored when omitted."`
	Headers   map[string]string `yaml:"headers" example:"{X-Source: ringgate}" doc:"Extra request headers."`
	Timeout   time.Duration     `yaml:"timeout" default:"0" example:"30s" doc:"Time for one attempt to this endpoint (a slow receiver); 0: delivery.timeout."`
	RateLimit float64           `yaml:"rate_limit" default:"0" example:"5" doc:"At most this many attempts a second to this endpoint, for receivers with an API limit (bursts of up to one second's worth; a cluster's nodes share it); 0: no limit."`
	Transform *Transform        `yaml:"transform" doc:"Optional WebAssembly transform."`
}

type Transform struct {
	Module      string            `yaml:"module" example:"plugins/examples/gohighlevel/gohighlevel.wasm" doc:"Path of the .wasm module."`
	Config      map[string]string `yaml:"config" example:"{tag: PPC}" doc:"Values the guest reads with config_get."`
	Timeout     time.Duration     `yaml:"timeout" default:"100ms" doc:"Time for one call."`
	MemoryLimit ByteSize          `yaml:"memory_limit" default:"64MiB" doc:"Guest memory cap."`
}

// ByteSize is a size in bytes that config accepts as 65536, 64KiB, 64MiB or 1GiB.
type ByteSize int64

// Endpoint returns the endpoint with that id and its workspace, or nil.
func (c *Config) Endpoint(id string) (*Endpoint, *Workspace) {
	for wi := range c.Workspaces {
		w := &c.Workspaces[wi]
		for ei := range w.Endpoints {
			if w.Endpoints[ei].ID == id {
				return &w.Endpoints[ei], w
			}
		}
	}
	return nil, nil
}

// Workspace returns the workspace with that id, or nil.
func (c *Config) Workspace(id int64) *Workspace {
	for i := range c.Workspaces {
		if c.Workspaces[i].ID == id {
			return &c.Workspaces[i]
		}
	}
	return nil
}

// TrackingNumber finds a tracking number with its campaign and workspace, or nils.
func (c *Config) TrackingNumber(e164 string) (*Number, *Campaign, *Workspace) {
	for wi := range c.Workspaces {
		w := &c.Workspaces[wi]
		for ci := range w.Campaigns {
			cp := &w.Campaigns[ci]
			for ni := range cp.Numbers {
				if cp.Numbers[ni].Number == e164 {
					return &cp.Numbers[ni], cp, w
				}
			}
		}
	}
	return nil, nil, nil
}

// Campaign returns the workspace's campaign with that id, or nil.
func (w *Workspace) Campaign(id int64) *Campaign {
	for i := range w.Campaigns {
		if w.Campaigns[i].ID == id {
			return &w.Campaigns[i]
		}
	}
	return nil
}

// Number returns the campaign's number with that id, or nil.
func (c *Campaign) Number(id int64) *Number {
	for i := range c.Numbers {
		if c.Numbers[i].ID == id {
			return &c.Numbers[i]
		}
	}
	return nil
}

// AttemptTimeout is the time for one attempt to the endpoint: its own timeout, or the
// delivery section's.
func (e *Endpoint) AttemptTimeout(d Delivery) time.Duration {
	if e.Timeout > 0 {
		return e.Timeout
	}
	return d.Timeout
}

// ForCampaign reports whether the endpoint takes the events of that campaign.
func (e *Endpoint) ForCampaign(id int64) bool {
	if len(e.Campaigns) == 0 {
		return true
	}
	for _, c := range e.Campaigns {
		if c == id {
			return true
		}
	}
	return false
}

// Subscribed reports whether the endpoint takes that event type.
func (e *Endpoint) Subscribed(event string) bool {
	for _, ev := range e.Events {
		if ev == event {
			return true
		}
	}
	return false
}

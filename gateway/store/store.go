// Package store hides the database behind small interfaces: the delivery queue, delivery records
// and attempts, and endpoint state. The embedded Badger backend lives in store/badger; every
// other package is storage-agnostic. Operations are whole state transitions, so a clustered
// backend can implement each one with compare-and-set.
package store

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/ringgate/ringgate/gateway/pace"
)

// ErrNotFound is returned for a missing record.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a transition does not apply to the record's current state, e.g.
// retrying a delivery that has not failed.
var ErrConflict = errors.New("conflict")

// Status is a delivery's state.
type Status string

const (
	Pending  Status = "pending"
	Retrying Status = "retrying"
	Success  Status = "success"
	Failed   Status = "failed"
	Held     Status = "held"
	Filtered Status = "filtered"
)

// Final reports whether no more attempts will be made without an operator.
func (s Status) Final() bool { return s == Success || s == Failed || s == Filtered }

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	switch s {
	case Pending, Retrying, Success, Failed, Held, Filtered:
		return true
	}
	return false
}

// EventRecord is one published event.
type EventRecord struct {
	ID          string    `json:"id"`
	Type        string    `json:"event"`
	WorkspaceID int64     `json:"workspace_id"`
	CreatedAt   time.Time `json:"created_at"`
	Payload     []byte    `json:"-"`
}

// Delivery is one event on its way to one endpoint. Its ID is the webhook-id of every attempt.
type Delivery struct {
	ID          string    `json:"id"`
	EventID     string    `json:"event_id"`
	Event       string    `json:"event"`
	WorkspaceID int64     `json:"workspace_id"`
	EndpointID  string    `json:"endpoint_id"`
	Status      Status    `json:"status"`
	Attempts    int       `json:"attempts"`
	NextAt      time.Time `json:"next_attempt_at,omitzero"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	// Manual marks an operator's retry: one attempt, no automatic retries after it.
	Manual bool `json:"manual,omitempty"`
	// Test marks a send-test delivery.
	Test       bool   `json:"test,omitempty"`
	LastStatus int    `json:"last_status_code,omitempty"`
	LastError  string `json:"last_error,omitempty"`
	// Trace is the id that links the delivery to what caused it (the call's CallSid).
	Trace string `json:"trace,omitempty"`
	// Payload is the event body (not the transformed one); loaded on demand.
	Payload []byte `json:"-"`
}

// Attempt is one try at sending a delivery.
type Attempt struct {
	N          int           `json:"attempt"`
	At         time.Time     `json:"at"`
	StatusCode int           `json:"status_code,omitempty"`
	Duration   time.Duration `json:"duration_ns"`
	Error      string        `json:"error,omitempty"`
	Response   string        `json:"response,omitempty"`
	// Logs are what a transform logged during this attempt.
	Logs string `json:"logs,omitempty"`
}

// EndpointState is what the gateway remembers about an endpoint beyond its config.
type EndpointState struct {
	ID                  string    `json:"id"`
	Enabled             bool      `json:"enabled"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	DisabledAt          time.Time `json:"disabled_at,omitzero"`
	Secret              string    `json:"secret"`
	// ConfigSecretHash is the SHA-256 of the config secret that Secret came from, so a changed
	// config secret replaces a stored one; empty for generated or rotated secrets.
	ConfigSecretHash string `json:"config_secret_hash,omitempty"`
	// PreviousSecret still verifies until PreviousExpires after a rotation.
	PreviousSecret  string    `json:"previous_secret,omitempty"`
	PreviousExpires time.Time `json:"previous_expires,omitzero"`
}

// BreakerChange is what an attempt's outcome does to its endpoint's breaker.
type BreakerChange int

const (
	BreakerNone    BreakerChange = iota
	BreakerSuccess               // reset consecutive failures
	BreakerFailure               // one more failed delivery; disable at the threshold
)

// Outcome is the result of one attempt, applied atomically: the attempt is recorded, the
// delivery moves to its new state (and its queue position), and the breaker is updated.
type Outcome struct {
	Prev      Delivery // the state the attempt started from, as Due returned it
	Delivery  Delivery // the new state; NextAt is the due time when Status is Retrying
	Attempt   Attempt
	Breaker   BreakerChange
	Threshold int
	Now       time.Time
}

// DeliveryFilter selects deliveries for listing, newest first.
type DeliveryFilter struct {
	EndpointID string
	Status     Status
	Event      string
	Limit      int
	// Cursor is the id of the last delivery of the previous page.
	Cursor string
}

// Store is the whole persistence surface of the delivery pipeline.
type Store interface {
	// Publish writes the event and its deliveries in one durable commit. A delivery to an
	// endpoint that is disabled is stored as Held. When Publish returns nil, all of it survives a
	// crash.
	Publish(ctx context.Context, ev EventRecord, ds []Delivery) error

	// Due returns up to limit deliveries of the endpoint whose due time is in [from, now],
	// earliest first, skipping ids in skip, with their payloads. next is the due time of the
	// first queued delivery after those returned (zero when there is none).
	Due(ctx context.Context, endpointID string, from, now time.Time, limit int, skip func(id string) bool) (ds []Delivery, next time.Time, err error)

	// Complete applies one attempt's outcome. It returns the endpoint's state afterwards when
	// the breaker changed it, nil otherwise.
	Complete(ctx context.Context, o Outcome) (*EndpointState, error)

	// Hold takes a queued delivery out of the queue as Held (its endpoint is disabled).
	Hold(ctx context.Context, id string, now time.Time) error

	// Retry queues a Failed delivery for one manual attempt now.
	Retry(ctx context.Context, id string, now time.Time) (Delivery, error)

	// Enable re-enables an endpoint, resets its failures and queues its held deliveries now;
	// it returns how many were released.
	Enable(ctx context.Context, endpointID string, now time.Time) (int, error)

	// Endpoint returns an endpoint's state, or ErrNotFound.
	Endpoint(ctx context.Context, id string) (EndpointState, error)
	// UpdateEndpoint applies fn to the endpoint's state (a zero state with ID set when it does
	// not exist yet) and stores the result.
	UpdateEndpoint(ctx context.Context, id string, fn func(*EndpointState) error) (EndpointState, error)

	// Delivery returns one delivery with its payload and attempts.
	Delivery(ctx context.Context, id string) (Delivery, []Attempt, error)
	// Deliveries lists deliveries newest first.
	Deliveries(ctx context.Context, f DeliveryFilter) ([]Delivery, error)
	// Counts returns how many deliveries are in each non-final status, for metrics.
	Counts(ctx context.Context) (map[Status]int, error)

	CallStore
	SessionStore
	Close() error
}

// Attribution is what the website tracker captured for the visitor a call is matched to.
type Attribution struct {
	SessionID string            `json:"session_id"`
	Fields    map[string]string `json:"fields"` // utm_*, click ids, ga ids, referrer_url, landing_page_url
}

// Voicemail is a call's voicemail, once left.
type Voicemail struct {
	RecordingSID  string    `json:"recording_sid"`
	RecordingURL  string    `json:"recording_url"`
	Duration      int       `json:"duration"`
	Transcription string    `json:"transcription,omitempty"`
	TranscribedAt time.Time `json:"transcribed_at,omitzero"`
}

// Lead is an operator's qualification of a call.
type Lead struct {
	Status      string    `json:"lead_status"`
	Reason      string    `json:"qualification_reason,omitempty"`
	Confidence  *float64  `json:"qualification_confidence,omitempty"`
	DealValue   *float64  `json:"deal_value,omitempty"`
	Tags        []string  `json:"tags"`
	QualifiedAt time.Time `json:"qualified_at"`
}

// Transcript is a call recording's transcription (Twilio Voice Intelligence).
type Transcript struct {
	SID          string    `json:"sid"`
	Text         string    `json:"text,omitempty"`
	Confidence   *float64  `json:"confidence,omitempty"`
	Summary      string    `json:"summary,omitempty"`
	SummarizedAt time.Time `json:"summarized_at,omitzero"`
}

// CallLog is one call, keyed by Twilio's CallSid; its integer ID is the call_log_id of payloads.
type CallLog struct {
	ID          int64  `json:"call_log_id"`
	SID         string `json:"twilio_call_sid"`
	Version     uint64 `json:"version"`
	WorkspaceID int64  `json:"workspace_id"`
	CampaignID  int64  `json:"campaign_id"`
	NumberID    int64  `json:"number_id"`
	// The names as configured when the call came in, so later events of the call agree.
	CampaignName string `json:"campaign_name"`
	NumberName   string `json:"tracking_number_name,omitempty"`
	From         string `json:"from_number"`
	To           string `json:"tracking_number"`
	CallerName   string `json:"caller_name,omitempty"`
	City         string `json:"city,omitempty"`
	State        string `json:"state,omitempty"`
	Country      string `json:"country,omitempty"`
	Zip          string `json:"zip,omitempty"`
	FirstTime    bool   `json:"is_first_time_caller"`

	Attribution *Attribution `json:"attribution,omitempty"`
	StartedAt   time.Time    `json:"started_at"`
	EndedAt     time.Time    `json:"ended_at,omitzero"`
	// Status is Twilio's latest call status (ringing, in-progress, completed, busy, ...); it never
	// moves backwards. Outcome is the terminal decision: completed, missed or blocked.
	Status        string `json:"status"`
	StatusSeq     int    `json:"status_seq"`
	Outcome       string `json:"outcome,omitempty"`
	Duration      int    `json:"duration"`
	DialStatus    string `json:"dial_status,omitempty"`
	BlockReason   string `json:"block_reason,omitempty"`
	BlockListType string `json:"block_list_type,omitempty"`

	Recordings   []string    `json:"recordings,omitempty"` // RecordingSids already announced
	RecordingURL string      `json:"recording_url,omitempty"`
	Voicemail    *Voicemail  `json:"voicemail,omitempty"`
	Transcript   *Transcript `json:"transcript,omitempty"`
	Lead         *Lead       `json:"lead,omitempty"`
	// Emitted lists the event types (and per-recording keys) already published for this call.
	Emitted []string `json:"emitted,omitempty"`
}

// HasEmitted reports whether key was already published for this call.
func (c *CallLog) HasEmitted(key string) bool {
	for _, k := range c.Emitted {
		if k == key {
			return true
		}
	}
	return false
}

// Outbox is events and their deliveries to commit with a state change.
type Outbox struct {
	Events     []EventRecord
	Deliveries []Delivery
}

// CallFilter selects call logs for listing, newest first.
type CallFilter struct {
	WorkspaceID int64
	Limit       int
	Cursor      int64 // the call_log_id of the last call of the previous page
}

// CallStore keeps call logs.
type CallStore interface {
	// Call returns the call with that CallSid, or ErrNotFound.
	Call(ctx context.Context, sid string) (CallLog, error)
	// CallByID returns the call with that call_log_id, or ErrNotFound.
	CallByID(ctx context.Context, id int64) (CallLog, error)
	// Calls lists calls newest first.
	Calls(ctx context.Context, f CallFilter) ([]CallLog, error)
	// NextCallLogID hands out a call_log_id: increasing, unique, possibly skipping after a restart.
	NextCallLogID(ctx context.Context) (int64, error)
	// SaveCall stores c if the stored version is still expect (0: the call must not exist yet),
	// with the outbox, in one durable commit; otherwise ErrConflict. It returns the call as
	// stored.
	SaveCall(ctx context.Context, c CallLog, expect uint64, out Outbox) (CallLog, error)
	// CallerKnown reports whether an earlier call from that number reached the workspace.
	CallerKnown(ctx context.Context, workspaceID int64, from string) (bool, error)
}

// Session is a website visitor's session: its attribution and the pool number it holds.
type Session struct {
	ID          string            `json:"id"`
	WorkspaceID int64             `json:"workspace_id"`
	CampaignID  int64             `json:"campaign_id"`
	Number      string            `json:"number,omitempty"`
	Attribution map[string]string `json:"attribution"`
	CreatedAt   time.Time         `json:"created_at"`
	// AssignedAt is when the session took Number; HoldUntil when it lets go without a heartbeat.
	AssignedAt time.Time `json:"assigned_at"`
	HoldUntil  time.Time `json:"hold_until"`
}

// SessionStore keeps visitor sessions.
type SessionStore interface {
	// PutSession stores a session for ttl (SessionTTL: until its hold ends plus a grace, on the
	// caller's clock). It returns once committed, without waiting for the fsync (which follows
	// within milliseconds): a session lost to a power cut costs one attribution, and a browser
	// should not wait on a disk.
	PutSession(ctx context.Context, s Session, ttl time.Duration) error
	// Session returns a session, or ErrNotFound.
	Session(ctx context.Context, id string) (Session, error)
	// Sessions calls fn for every stored session (to rebuild pools at start).
	Sessions(ctx context.Context, fn func(Session) error) error
}

// Notifier is implemented by stores that several processes share. They report what the other
// processes did: deliveries that became due (published, released or handed back elsewhere) and
// endpoint state that changed (the breaker, a rotated secret).
type Notifier interface {
	Notify(due func(endpointID string), endpoint func(EndpointState))
}

// Hold is one session's hold of a pool number.
type Hold struct {
	Session string    `json:"s"`
	From    time.Time `json:"f"`
	Until   time.Time `json:"u"`
}

// NumberHolds is implemented by stores that several processes share: a pool number's recent
// holds are one record, changed with compare-and-set, so two processes never hand one number to
// two visitors, and a call reaching any process finds the visitor who saw the number.
type NumberHolds interface {
	// Holds returns a number's recent holds, oldest first, and the record's version (0: none).
	Holds(ctx context.Context, number string) ([]Hold, uint64, error)
	// SetHolds stores them if the version is still expect, else returns ErrConflict.
	SetHolds(ctx context.Context, number string, hs []Hold, expect uint64) (uint64, error)
}

// Pacer is implemented by stores that several processes share: a limit paced under one key
// (an endpoint's rate_limit, the tracker's new sessions from one address) is one budget for all
// the processes, kept in one record changed with compare-and-set.
type Pacer interface {
	// Pace takes one event's share of the budget of key at now, paced at r. When there is none
	// it returns how long until there is (0: taken). When other processes kept changing the
	// record all the while it tried, it returns ErrContended: the budget may well have room.
	Pace(ctx context.Context, key string, r pace.Rate, now time.Time) (time.Duration, error)
}

// ErrContended is returned by a Pacer that lost every compare-and-set it tried to others taking
// shares of the same budget: nothing was decided, and asking again may succeed at once.
var ErrContended = errors.New("contended: other processes kept taking shares of the same budget")

// ApplyBreaker applies the outcome's breaker change to an endpoint's state; it reports whether
// the state changed (a success with no failures to reset changes nothing).
func (o *Outcome) ApplyBreaker(st *EndpointState) bool {
	switch o.Breaker {
	case BreakerSuccess:
		if st.ConsecutiveFailures == 0 {
			return false
		}
		st.ConsecutiveFailures = 0
	case BreakerFailure:
		st.ConsecutiveFailures++
		if st.Enabled && o.Threshold > 0 && st.ConsecutiveFailures >= o.Threshold {
			st.Enabled = false
			st.DisabledAt = o.Now
		}
	default:
		return false
	}
	return true
}

// SessionTTL is how long a stored session is kept: until its hold ends plus grace, at least a
// second. now comes from the same clock as the hold (an injected one, in tests, may be months
// from the wall clock's).
func SessionTTL(s Session, now time.Time, grace time.Duration) time.Duration {
	return max(s.HoldUntil.Sub(now)+grace, time.Second)
}

// Backuper is implemented by stores that can write a consistent copy of themselves while they
// run (Badger; a JetStream store is backed up with NATS's own tools).
type Backuper interface {
	// Backup writes the copy to w and returns how many bytes it wrote.
	Backup(ctx context.Context, w io.Writer) (int64, error)
}

// Pinger is implemented by stores that live elsewhere: Ping reports whether the store can take
// writes now (for the gateway's readiness check).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Releaser is implemented by stores whose processes hold queued deliveries of their own: Release
// hands back those of an endpoint this process stopped serving (removed from its config), so
// other processes can send them.
type Releaser interface {
	Release(endpointID string)
}

// PageLimit is a listing's page size: 50 when unset, at most 500.
func PageLimit(n int) int {
	if n <= 0 || n > 500 {
		return 50
	}
	return n
}

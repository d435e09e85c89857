// Package store hides the database behind small interfaces: the delivery queue, delivery records
// and attempts, and endpoint state. The embedded Badger backend lives in store/badger; every
// other package is storage-agnostic. Operations are whole state transitions, so a clustered
// backend can implement each one with compare-and-set.
package store

import (
	"context"
	"errors"
	"time"
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

	Close() error
}

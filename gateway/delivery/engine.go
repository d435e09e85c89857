// Package delivery turns published events into signed POSTs: the outbox (one durable commit per
// event and its deliveries), a scheduler on time-ordered queue keys with one lane per endpoint,
// the attempt (transform, sign, send), retries with jitter, the breaker, and the operator's
// commands (send test, retry, enable, rotate secret).
package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringgate/ringgate/gateway/clock"
	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/events"
	"github.com/ringgate/ringgate/gateway/store"
	"github.com/valyala/fasthttp"
)

// RotationGrace is how long a rotated-out secret still signs (and so still verifies).
const RotationGrace = 24 * time.Hour

// Options are what an Engine is built from.
type Options struct {
	Store   store.Store
	Clock   clock.Clock  // clock.Real{} when nil
	Logger  *slog.Logger // slog.Default() when nil
	Version string       // in User-Agent
	// Resolver replaces DNS for the SSRF-safe dialer (tests).
	Resolver Resolver
	// Jitter returns a number in [0,1) for retry jitter; math/rand when nil.
	Jitter func() float64
	// Transform, when set, runs an endpoint's transform before signing.
	Transform Transformer
	// Observer, when set, is told about every attempt.
	Observer Observer
}

// Transformer runs an endpoint's transform on a payload.
type Transformer interface {
	Transform(ctx context.Context, ep *config.Endpoint, meta TransformMeta, body []byte) (TransformResult, error)
}

// Recycler is a Transformer that takes back the bodies it returned: the engine hands each back
// once its attempt is over, and never touches it again.
type Recycler interface {
	Recycle(body []byte)
}

// TransformMeta is what a transform may read about the delivery.
type TransformMeta struct {
	Event, EndpointID, EndpointURL, DeliveryID string
	WorkspaceID                                int64
	Attempt                                    int
}

// TransformResult is a transform's decision.
type TransformResult struct {
	Body    []byte // nil: the original payload
	Headers [][2]string
	Drop    bool   // recorded as filtered
	Logs    string // kept with the attempt
}

// Observer receives attempt outcomes, for metrics.
type Observer interface {
	Attempted(endpointID string, status store.Status, code int, d time.Duration)
	BreakerChanged(endpointID string, enabled bool)
}

// Engine is the delivery pipeline. Its lifecycle reads Provision (config), Start, Stop.
type Engine struct {
	opt    Options
	store  store.Store
	clock  clock.Clock
	log    *slog.Logger
	client atomic.Pointer[fasthttp.Client]
	// clientFor is the delivery config the client was built for, clientTimeout its timeouts.
	clientFor     config.Delivery
	clientTimeout time.Duration

	cfg       atomic.Pointer[config.Config]
	endpoints atomic.Pointer[map[string]*endpoint]

	mu      sync.Mutex
	lanes   map[string]*lane
	started bool
	stopped bool
	stop    chan struct{}
	wg      sync.WaitGroup // lanes and attempts
}

// endpoint is an endpoint's config with what the engine derives from it.
type endpoint struct {
	cfg   *config.Endpoint
	ws    *config.Workspace
	state atomic.Pointer[store.EndpointState]
	keys  atomic.Pointer[signers]
}

// signers are an endpoint's: the current secret only, and current plus previous until the
// rotation grace ends. They change together, atomically, when another node rotates the secret.
type signers struct{ one, both *Signer }

// New returns an engine; call Provision before Start.
func New(opt Options) *Engine {
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Jitter == nil {
		opt.Jitter = rand.Float64
	}
	if opt.Version == "" {
		opt.Version = "dev"
	}
	e := &Engine{opt: opt, store: opt.Store, clock: opt.Clock, log: opt.Logger, lanes: map[string]*lane{}, stop: make(chan struct{})}
	empty := map[string]*endpoint{}
	e.endpoints.Store(&empty)
	return e
}

// Provision loads a config: it makes sure each endpoint has a stored state and a secret, builds
// its signer, and (once started) starts and stops lanes to match. It is also the reload path.
func (e *Engine) Provision(ctx context.Context, cfg *config.Config) error {
	e.mu.Lock()
	if dc, timeout := cfg.Delivery, clientTimeout(cfg); e.client.Load() == nil || timeout != e.clientTimeout ||
		dc.AllowPrivateNetworks != e.clientFor.AllowPrivateNetworks || dc.MaxInFlight != e.clientFor.MaxInFlight {
		if old := e.client.Swap(newClient(cfg, e.opt, timeout)); old != nil {
			old.CloseIdleConnections()
		}
		e.clientFor, e.clientTimeout = dc, timeout
	}
	e.mu.Unlock()
	if cfg.Delivery.AllowHTTP {
		e.log.Warn("delivery.allow_http is on: endpoint URLs may be plain http (local testing only)")
	}
	if cfg.Delivery.AllowPrivateNetworks {
		e.log.Warn("delivery.allow_private_networks is on: endpoints may be on loopback and private addresses (local testing only)")
	}
	eps := map[string]*endpoint{}
	for wi := range cfg.Workspaces {
		ws := &cfg.Workspaces[wi]
		for i := range ws.Endpoints {
			ec := &ws.Endpoints[i]
			st, err := e.store.UpdateEndpoint(ctx, ec.ID, func(st *store.EndpointState) error {
				if ec.Secret != "" {
					if h := hashSecret(ec.Secret); h != st.ConfigSecretHash {
						st.Secret, st.ConfigSecretHash = ec.Secret, h
						st.PreviousSecret, st.PreviousExpires = "", time.Time{}
					}
				}
				if st.Secret == "" {
					st.Secret = NewSecret()
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("endpoint %s: %w", ec.ID, err)
			}
			ep := &endpoint{cfg: ec, ws: ws}
			if err := ep.setState(st); err != nil {
				return fmt.Errorf("endpoint %s: %w", ec.ID, err)
			}
			eps[ec.ID] = ep
		}
	}
	e.cfg.Store(cfg)
	e.endpoints.Store(&eps)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started && !e.stopped {
		e.syncLanes(eps)
	}
	return nil
}

func hashSecret(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func (ep *endpoint) setState(st store.EndpointState) error {
	if cur := ep.state.Load(); cur != nil && cur.Secret == st.Secret && cur.PreviousSecret == st.PreviousSecret {
		ep.state.Store(&st) // same secrets: the signers stand
		return nil
	}
	s, err := NewSigner(st.Secret, "")
	if err != nil {
		return fmt.Errorf("stored secret: %w", err)
	}
	k := &signers{one: s, both: s}
	if st.PreviousSecret != "" {
		if b, err := NewSigner(st.Secret, st.PreviousSecret); err == nil {
			k.both = b
		}
	}
	ep.keys.Store(k)
	ep.state.Store(&st)
	return nil
}

// signerAt is the signer in force at now: both secrets during a rotation's grace.
func (ep *endpoint) signerAt(now time.Time) *Signer {
	if st := ep.state.Load(); st.PreviousSecret != "" && now.Before(st.PreviousExpires) {
		return ep.keys.Load().both
	}
	return ep.keys.Load().one
}

// Start runs a lane for each endpoint.
func (e *Engine) Start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cfg.Load() == nil {
		return errors.New("delivery: Start before Provision")
	}
	if e.started {
		return nil
	}
	e.started = true
	e.syncLanes(*e.endpoints.Load())
	if n, ok := e.store.(store.Notifier); ok {
		n.Notify(e.wake, e.endpointChanged)
	}
	return nil
}

// endpointChanged takes an endpoint's state as another node left it: the breaker tripped or
// reset there, the secret rotated there.
func (e *Engine) endpointChanged(st store.EndpointState) {
	ep := e.endpoint(st.ID)
	if ep == nil {
		return
	}
	cur := ep.state.Load()
	if cur != nil && *cur == st {
		return
	}
	if err := ep.setState(st); err != nil {
		e.log.Error("endpoint state", "endpoint", st.ID, "err", err)
		return
	}
	if cur != nil && cur.Enabled != st.Enabled {
		e.log.Info("endpoint state changed on another node", "endpoint", st.ID, "enabled", st.Enabled)
		if obs := e.opt.Observer; obs != nil {
			obs.BreakerChanged(st.ID, st.Enabled)
		}
	}
	if st.Enabled {
		e.wake(st.ID)
	}
}

// syncLanes starts lanes for new endpoints, stops lanes of removed ones and pokes the others.
// e.mu is held.
func (e *Engine) syncLanes(eps map[string]*endpoint) {
	for id, l := range e.lanes {
		if _, ok := eps[id]; !ok {
			close(l.quit)
			delete(e.lanes, id)
			if r, ok := e.store.(store.Releaser); ok {
				r.Release(id)
			}
		}
	}
	for id := range eps {
		if l, ok := e.lanes[id]; ok {
			l.poke() // to apply a new max_in_flight
			continue
		}
		l := newLane(e, id)
		e.lanes[id] = l
		e.wg.Add(1)
		go l.run()
	}
}

// Stop stops scheduling and waits, until ctx ends, for attempts in flight. It is idempotent.
func (e *Engine) Stop(ctx context.Context) error {
	e.mu.Lock()
	if !e.stopped {
		e.stopped = true
		close(e.stop)
	}
	e.mu.Unlock()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		if c := e.client.Load(); c != nil {
			c.CloseIdleConnections()
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("delivery: attempts still in flight: %w", ctx.Err())
	}
}

func (e *Engine) wake(endpointID string) {
	e.mu.Lock()
	l := e.lanes[endpointID]
	e.mu.Unlock()
	if l != nil {
		l.poke()
	}
}

func (e *Engine) endpoint(id string) *endpoint { return (*e.endpoints.Load())[id] }

// ErrUnknownWorkspace is returned by Publish for an event of a workspace not in the config.
var ErrUnknownWorkspace = errors.New("unknown workspace")

// Published says what Publish stored.
type Published struct {
	EventID     string
	DeliveryIDs []string
}

// Publish makes the event durable with one delivery for each endpoint of its workspace that
// subscribes to its type. When it returns nil, the event survives a crash.
func (e *Engine) Publish(ctx context.Context, ev *events.Event) (Published, error) {
	out, p, err := e.Prepare(ev)
	if err != nil {
		return Published{}, err
	}
	if err := e.store.Publish(ctx, out.Events[0], out.Deliveries); err != nil {
		return Published{}, fmt.Errorf("store event: %w", err)
	}
	e.Notify(out)
	return p, nil
}

// Prepare turns events into the outbox that commits them: one delivery for each endpoint of the
// event's workspace subscribed to its type. A caller that commits the outbox itself (with a state
// change, through the store) calls Notify afterwards.
func (e *Engine) Prepare(evs ...*events.Event) (store.Outbox, Published, error) {
	cfg := e.cfg.Load()
	var out store.Outbox
	var pub Published
	for _, ev := range evs {
		ws := cfg.Workspace(ev.Workspace.ID)
		if ws == nil {
			return out, pub, fmt.Errorf("%w %d", ErrUnknownWorkspace, ev.Workspace.ID)
		}
		var targets []string
		campaign, hasCampaign := ev.CampaignID()
		for i := range ws.Endpoints {
			ep := &ws.Endpoints[i]
			if ep.Subscribed(ev.Type) && (!hasCampaign || ep.ForCampaign(campaign)) {
				targets = append(targets, ep.ID)
			}
		}
		if err := e.prepare(&out, &pub, ev, targets, false); err != nil {
			return out, pub, err
		}
	}
	return out, pub, nil
}

// Notify wakes the lanes of a committed outbox's deliveries.
func (e *Engine) Notify(out store.Outbox) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range out.Deliveries {
		if l := e.lanes[d.EndpointID]; l != nil {
			l.published(d.NextAt)
		}
	}
}

func (e *Engine) prepare(out *store.Outbox, pub *Published, ev *events.Event, targets []string, test bool) error {
	if !events.Known(ev.Type) {
		return fmt.Errorf("unknown event type %q", ev.Type)
	}
	body, err := ev.Marshal()
	if err != nil {
		return fmt.Errorf("marshal %s: %w", ev.Type, err)
	}
	now := e.clock.Now()
	rec := store.EventRecord{ID: store.NewID("evt_", now), Type: ev.Type, WorkspaceID: ev.Workspace.ID, CreatedAt: now, Payload: body}
	out.Events = append(out.Events, rec)
	pub.EventID = rec.ID
	for _, ep := range targets {
		d := store.Delivery{
			ID: store.NewID("msg_", now), EventID: rec.ID, Event: ev.Type, WorkspaceID: ev.Workspace.ID,
			EndpointID: ep, NextAt: now, CreatedAt: now, UpdatedAt: now, Test: test, Payload: body, Trace: ev.Trace,
		}
		out.Deliveries = append(out.Deliveries, d)
		pub.DeliveryIDs = append(pub.DeliveryIDs, d.ID)
	}
	return nil
}

// Errors of the operator's commands.
var (
	ErrUnknownEndpoint = errors.New("unknown endpoint")
	ErrNotSubscribed   = errors.New("endpoint is not subscribed to that event")
)

// SendTest queues a sample of the event type to one endpoint, which must subscribe to it.
func (e *Engine) SendTest(ctx context.Context, endpointID, eventType string) (string, error) {
	ep := e.endpoint(endpointID)
	if ep == nil {
		return "", ErrUnknownEndpoint
	}
	if !ep.cfg.Subscribed(eventType) {
		return "", fmt.Errorf("%w %q (it takes: %v)", ErrNotSubscribed, eventType, ep.cfg.Events)
	}
	ev, err := events.Sample(eventType, events.Workspace{ID: ep.ws.ID, Name: ep.ws.Name}, e.clock.Now())
	if err != nil {
		return "", err
	}
	var out store.Outbox
	var p Published
	if err := e.prepare(&out, &p, ev, []string{endpointID}, true); err != nil {
		return "", err
	}
	if err := e.store.Publish(ctx, out.Events[0], out.Deliveries); err != nil {
		return "", fmt.Errorf("store event: %w", err)
	}
	e.Notify(out)
	return p.DeliveryIDs[0], nil
}

// Retry queues one manual attempt of a failed delivery.
func (e *Engine) Retry(ctx context.Context, id string) (store.Delivery, error) {
	d, err := e.store.Retry(ctx, id, e.clock.Now())
	if err == nil {
		e.wake(d.EndpointID)
	}
	return d, err
}

// RetryFailed queues one manual attempt of each of the endpoint's failed deliveries, newest
// first, at most limit of them (after a receiver's outage outlasted the retry schedule). It
// returns how many were queued; the endpoint's rate_limit and max_in_flight pace them.
func (e *Engine) RetryFailed(ctx context.Context, endpointID string, limit int) (int, error) {
	if e.endpoint(endpointID) == nil {
		return 0, ErrUnknownEndpoint
	}
	n, cursor := 0, ""
	defer func() {
		if n > 0 {
			e.log.Info("failed deliveries queued again", "endpoint", endpointID, "deliveries", n)
			e.wake(endpointID)
		}
	}()
	for n < limit {
		ds, err := e.store.Deliveries(ctx, store.DeliveryFilter{EndpointID: endpointID, Status: store.Failed, Limit: min(limit-n, 100), Cursor: cursor})
		if err != nil || len(ds) == 0 {
			return n, err
		}
		for _, d := range ds {
			if _, err := e.store.Retry(ctx, d.ID, e.clock.Now()); errors.Is(err, store.ErrConflict) {
				continue // retried meanwhile
			} else if err != nil {
				return n, err
			}
			n++
		}
		cursor = ds[len(ds)-1].ID
	}
	return n, nil
}

// Enable re-enables an endpoint and releases its held deliveries.
func (e *Engine) Enable(ctx context.Context, endpointID string) (int, error) {
	ep := e.endpoint(endpointID)
	if ep == nil {
		return 0, ErrUnknownEndpoint
	}
	n, err := e.store.Enable(ctx, endpointID, e.clock.Now())
	if err != nil {
		return n, err
	}
	if err := e.refresh(ctx, ep); err != nil {
		return n, err
	}
	e.log.Info("endpoint re-enabled", "endpoint", endpointID, "released", n)
	if e.opt.Observer != nil {
		e.opt.Observer.BreakerChanged(endpointID, true)
	}
	e.wake(endpointID)
	return n, nil
}

// RotateSecret gives the endpoint a new secret; the old one keeps signing for RotationGrace.
func (e *Engine) RotateSecret(ctx context.Context, endpointID string) (string, error) {
	ep := e.endpoint(endpointID)
	if ep == nil {
		return "", ErrUnknownEndpoint
	}
	now := e.clock.Now()
	st, err := e.store.UpdateEndpoint(ctx, endpointID, func(st *store.EndpointState) error {
		st.PreviousSecret, st.PreviousExpires = st.Secret, now.Add(RotationGrace)
		st.Secret = NewSecret()
		return nil
	})
	if err != nil {
		return "", err
	}
	if err := ep.setState(st); err != nil {
		return "", err
	}
	e.log.Info("endpoint secret rotated", "endpoint", endpointID, "previous_valid_until", st.PreviousExpires)
	return st.Secret, nil
}

func (e *Engine) refresh(ctx context.Context, ep *endpoint) error {
	st, err := e.store.Endpoint(ctx, ep.cfg.ID)
	if err != nil {
		return err
	}
	return ep.setState(st)
}

// EndpointView is an endpoint's config with its state, for the admin API.
type EndpointView struct {
	Config      *config.Endpoint
	WorkspaceID int64
	State       store.EndpointState
}

// Endpoints lists every configured endpoint with its state, in config order.
func (e *Engine) Endpoints() []EndpointView {
	cfg := e.cfg.Load()
	var out []EndpointView
	for _, ws := range cfg.Workspaces {
		for _, ec := range ws.Endpoints {
			if ep := e.endpoint(ec.ID); ep != nil {
				out = append(out, EndpointView{Config: ep.cfg, WorkspaceID: ws.ID, State: *ep.state.Load()})
			}
		}
	}
	return out
}

// Endpoint returns one endpoint's view.
func (e *Engine) Endpoint(id string) (EndpointView, bool) {
	ep := e.endpoint(id)
	if ep == nil {
		return EndpointView{}, false
	}
	return EndpointView{Config: ep.cfg, WorkspaceID: ep.ws.ID, State: *ep.state.Load()}, true
}

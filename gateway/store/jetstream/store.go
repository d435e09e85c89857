// Package jetstream is the clustered store: every store interface on NATS JetStream, so that
// several ringgate nodes behind a load balancer share one queue, one breaker per endpoint, one
// state machine per call and one set of visitor sessions.
//
// The layout:
//
//	RG_OUTBOX   work-queue stream: one message per commit (an event with its deliveries, or a
//	            call change's outbox). It is the commit: once stored on a quorum of replicas,
//	            the publish is acknowledged. The node that wrote it applies it at once and
//	            deletes it; if that node dies first, another node's applier does it.
//	RG_QUEUE    work-queue stream: one message per queued delivery, subject rg.q.<endpoint>,
//	            with a durable pull consumer per endpoint shared by all nodes; message ids
//	            deduplicate re-applied commits. Long retry delays go back to the server with
//	            NakWithDelay; short ones are held by the node that fetched them.
//	RG_IDS      the call_log_id sequence (the stream's sequence number).
//	KV rg_deliveries  delivery records with their attempts, by delivery id
//	KV rg_events      event payloads, by event id
//	KV rg_endpoints   endpoint state and the breaker (compare-and-set)
//	KV rg_calls       call logs by CallSid (compare-and-set on the revision)
//	KV rg_index       call.<id> → CallSid, caller.<ws>.<hex number>, held.<endpoint>.<id>
//	KV rg_sessions    visitor sessions, each with its own TTL
//	KV rg_holds       each pool number's recent holds (compare-and-set)
package jetstream

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ringgate/ringgate/gateway/store"
)

// Options configure the store.
type Options struct {
	// URLs of the NATS servers to connect to (ignored with Server).
	URLs []string
	// Server is an embedded server to connect to in-process; Close shuts it down.
	Server *server.Server
	// CredentialsFile is a NATS .creds file; TLS configures the client's TLS.
	CredentialsFile string
	TLS             *tls.Config
	// Replicas is each stream's and bucket's replica count (1 for one node, 3 for three).
	Replicas int
	// Retention is how long delivery records, events and calls are kept (default 30 days).
	Retention time.Duration
	// Horizon: a retry due within it stays with the node that ran the attempt; a later one goes
	// back to the server with NakWithDelay (default 1 minute).
	Horizon time.Duration
	// AckWait is how long a fetched queue message stays with a node that stops answering
	// (default 30 s); live nodes extend it for the messages they hold.
	AckWait time.Duration
	// Poll is how often each endpoint's queue is checked for deliveries that no local event
	// announced: redeliveries from a dead node, retries handed back (default 1 s).
	Poll   time.Duration
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Retention <= 0 {
		o.Retention = 30 * 24 * time.Hour
	}
	if o.Horizon <= 0 {
		o.Horizon = time.Minute
	}
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

const (
	queueSubject  = "rg.q."
	outboxSubject = "rg.outbox"
	idsSubject    = "rg.ids"
)

// Store is the JetStream backend.
type Store struct {
	opt Options
	nc  *nats.Conn
	js  jetstream.JetStream

	deliveries, events, endpoints, calls, index, sessions, holds, pace jetstream.KeyValue
	queue, outbox, ids                                                 jetstream.Stream

	mu    sync.Mutex
	lanes map[string]*lane
	// queuedSeq is, by endpoint, the stream sequence of the last queue message this node
	// published (*atomic.Uint64).
	queuedSeq sync.Map

	// notify hooks, set by the engine (store.Notifier).
	hookMu     sync.RWMutex
	onDue      func(endpointID string)
	onEndpoint func(store.EndpointState)

	enabledMu sync.RWMutex
	enabled   map[string]bool // endpoint → enabled, kept current by a watch of rg_endpoints

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

var (
	_ store.Store       = (*Store)(nil)
	_ store.Notifier    = (*Store)(nil)
	_ store.NumberHolds = (*Store)(nil)
)

// Open connects, creates or updates the streams and buckets, and starts the store's background
// work: the outbox applier, lease renewal of held queue messages, and change watches.
func Open(ctx context.Context, opt Options) (*Store, error) {
	opt.defaults()
	nopts := []nats.Option{nats.Name("ringgate"), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}
	if opt.CredentialsFile != "" {
		nopts = append(nopts, nats.UserCredentials(opt.CredentialsFile))
	}
	if opt.TLS != nil {
		nopts = append(nopts, nats.Secure(opt.TLS))
	}
	url := strings.Join(opt.URLs, ",")
	if opt.Server != nil {
		nopts = append(nopts, nats.InProcessServer(opt.Server))
		url = ""
	}
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	s := &Store{opt: opt, nc: nc, js: js, lanes: map[string]*lane{}, enabled: map[string]bool{}, stop: make(chan struct{})}
	if srv := opt.Server; srv != nil && srv.JetStreamIsClustered() {
		// An embedded node of a new cluster: requests made before the meta leader is elected
		// go unanswered, so wait for it (the nodes start together).
		for deadline := time.Now().Add(time.Minute); !srv.JetStreamIsCurrent() && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := s.provision(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// provision creates the streams and buckets, or updates them to the configured replicas.
//
// Nodes of a new cluster start together and all try to create the same streams while the
// cluster is still settling; a create that races another may go unanswered. So each stream and
// bucket is looked up first, created only when missing, every request has a short deadline,
// and the whole is retried for up to a minute.
func (s *Store) provision(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	r := s.opt.Replicas
	streams := []struct {
		dst *jetstream.Stream
		cfg jetstream.StreamConfig
	}{
		{&s.outbox, jetstream.StreamConfig{Name: "RG_OUTBOX", Subjects: []string{outboxSubject}, Retention: jetstream.WorkQueuePolicy}},
		{&s.queue, jetstream.StreamConfig{Name: "RG_QUEUE", Subjects: []string{queueSubject + ">"}, Retention: jetstream.WorkQueuePolicy, Duplicates: 10 * time.Minute}},
		{&s.ids, jetstream.StreamConfig{Name: "RG_IDS", Subjects: []string{idsSubject}, MaxMsgs: 1}},
	}
	ret := s.opt.Retention
	buckets := []struct {
		dst *jetstream.KeyValue
		cfg jetstream.KeyValueConfig
	}{
		{&s.deliveries, jetstream.KeyValueConfig{Bucket: "rg_deliveries", LimitMarkerTTL: time.Minute}}, // finished records expire one by one (putRecord)
		{&s.events, jetstream.KeyValueConfig{Bucket: "rg_events", TTL: ret + 24*time.Hour}},
		{&s.endpoints, jetstream.KeyValueConfig{Bucket: "rg_endpoints"}},
		{&s.calls, jetstream.KeyValueConfig{Bucket: "rg_calls"}}, // kept like Badger keeps them: log_retention is for deliveries
		{&s.index, jetstream.KeyValueConfig{Bucket: "rg_index"}},
		{&s.sessions, jetstream.KeyValueConfig{Bucket: "rg_sessions", LimitMarkerTTL: time.Minute}},
		{&s.holds, jetstream.KeyValueConfig{Bucket: "rg_holds"}},
		{&s.pace, jetstream.KeyValueConfig{Bucket: "rg_pace", TTL: paceTTL}},
	}
	retry := func(what string, fn func(ctx context.Context) error) error {
		for {
			actx, acancel := context.WithTimeout(ctx, time.Second)
			err := fn(actx)
			acancel()
			if err == nil {
				return nil
			}
			s.opt.Logger.Debug("JetStream not ready yet", "what", what, "err", err)
			select {
			case <-ctx.Done():
				return fmt.Errorf("set up JetStream %s: %w", what, err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	for _, st := range streams {
		cfg := st.cfg
		cfg.Replicas, cfg.Storage = r, jetstream.FileStorage
		err := retry("stream "+cfg.Name, func(ctx context.Context) error {
			cur, err := s.js.Stream(ctx, cfg.Name)
			switch {
			case errors.Is(err, jetstream.ErrStreamNotFound):
				cur, err = s.js.CreateStream(ctx, cfg)
			case err == nil && cur.CachedInfo().Config.Replicas != r:
				cur, err = s.js.UpdateStream(ctx, cfg)
			}
			if err == nil {
				*st.dst = cur
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	for _, b := range buckets {
		cfg := b.cfg
		cfg.Replicas, cfg.Storage = r, jetstream.FileStorage
		err := retry("bucket "+cfg.Bucket, func(ctx context.Context) error {
			kv, err := s.js.KeyValue(ctx, cfg.Bucket)
			switch {
			case errors.Is(err, jetstream.ErrBucketNotFound):
				kv, err = s.js.CreateKeyValue(ctx, cfg)
			case err == nil:
				var st jetstream.KeyValueStatus
				if st, err = kv.Status(ctx); err == nil && (st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas != r || st.TTL() != cfg.TTL) {
					kv, err = s.js.UpdateKeyValue(ctx, cfg)
				}
			}
			if err != nil {
				return err
			}
			if kv, err = s.leaderReads(ctx, kv); err == nil {
				*b.dst = kv
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// leaderReads turns off direct gets on a bucket, which any replica may answer from a state that
// lags the leader's: a node must read what it (or another node) has just written, e.g. a
// delivery's record before its queue message, or a retried delivery's new status.
func (s *Store) leaderReads(ctx context.Context, kv jetstream.KeyValue) (jetstream.KeyValue, error) {
	name := "KV_" + kv.Bucket()
	st, err := s.js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	if cfg := st.CachedInfo().Config; cfg.AllowDirect {
		cfg.AllowDirect = false
		if _, err := s.js.UpdateStream(ctx, cfg); err != nil {
			return nil, err
		}
	}
	return s.js.KeyValue(ctx, kv.Bucket())
}

func (s *Store) start(ctx context.Context) error {
	w, err := s.endpoints.WatchAll(ctx)
	if err != nil {
		return err
	}
	// The watch replays every current value, then a nil marker, then changes.
	for e := range w.Updates() {
		if e == nil {
			break
		}
		s.endpointChanged(e)
	}
	s.wg.Add(4)
	go func() {
		defer s.wg.Done()
		defer w.Stop()
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil {
					s.endpointChanged(e)
				}
			case <-s.stop:
				return
			}
		}
	}()
	// Every queue publish, from any node, wakes the lane of its endpoint here.
	sub, err := s.nc.Subscribe(queueSubject+"*", func(m *nats.Msg) {
		s.wake(untoken(strings.TrimPrefix(m.Subject, queueSubject)))
	})
	if err != nil {
		return err
	}
	go func() {
		defer s.wg.Done()
		<-s.stop
		sub.Unsubscribe()
	}()
	go s.applier()
	go s.housekeeping()
	return nil
}

// Close stops the background work and the connection, then the embedded server if any.
// Queue messages this node held go back to the others when their AckWait ends.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		// Everything this node owes is either acknowledged or left to AckWait: no drain.
		s.nc.Close()
		if s.opt.Server != nil {
			s.opt.Server.Shutdown()
			s.opt.Server.WaitForShutdown()
		}
	})
	return s.closeErr
}

// Notify registers the engine's hooks (store.Notifier).
func (s *Store) Notify(due func(endpointID string), endpoint func(store.EndpointState)) {
	s.hookMu.Lock()
	s.onDue, s.onEndpoint = due, endpoint
	s.hookMu.Unlock()
}

func (s *Store) wake(ep string) {
	s.hookMu.RLock()
	fn := s.onDue
	s.hookMu.RUnlock()
	if fn != nil {
		fn(ep)
	}
}

// housekeeping renews the lease of every queue message this node holds, and pokes each lane
// every Poll so deliveries no local event announced (a dead node's, a retry handed back) are
// found.
func (s *Store) housekeeping() {
	defer s.wg.Done()
	poll := time.NewTicker(s.opt.Poll)
	defer poll.Stop()
	renew := time.NewTicker(s.opt.AckWait / 3)
	defer renew.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-poll.C:
			for _, l := range s.lanesNow() {
				s.wake(l.ep)
			}
		case <-renew.C:
			for _, l := range s.lanesNow() {
				l.renew()
			}
		}
	}
}

// lanesNow is a snapshot of the lanes, to work on without holding s.mu.
func (s *Store) lanesNow() []*lane {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*lane, 0, len(s.lanes))
	for _, l := range s.lanes {
		out = append(out, l)
	}
	return out
}

// token makes an endpoint id a subject token and consumer name: ids with dots are hex-encoded
// behind '=' (which ids cannot contain).
func token(ep string) string {
	if strings.ContainsAny(ep, ".*> ") {
		return "=" + hex.EncodeToString([]byte(ep))
	}
	return ep
}

func untoken(t string) string {
	if strings.HasPrefix(t, "=") {
		if b, err := hex.DecodeString(t[1:]); err == nil {
			return string(b)
		}
	}
	return t
}

// notFound maps JetStream's missing key to store.ErrNotFound.
// getJSON reads key from kv and decodes it, with its revision; a missing key is
// store.ErrNotFound, and a value that does not decode is reported as what.
func getJSON[T any](ctx context.Context, kv jetstream.KeyValue, key, what string) (T, uint64, error) {
	var v T
	e, err := kv.Get(ctx, key)
	if err != nil {
		return v, 0, notFound(err)
	}
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return v, 0, fmt.Errorf("%s: %w", what, err)
	}
	return v, e.Revision(), nil
}

func notFound(err error) error {
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return store.ErrNotFound
	}
	return err
}

// isConflict reports a failed compare-and-set.
func isConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

var _ store.Pinger = (*Store)(nil)

// Ping reports whether the connection is up and JetStream answers (its account information).
func (s *Store) Ping(ctx context.Context) error {
	if !s.nc.IsConnected() {
		return fmt.Errorf("not connected to NATS (%s)", s.nc.Status())
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := s.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	return nil
}

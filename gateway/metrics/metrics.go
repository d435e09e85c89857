// Package metrics is ringgate's Prometheus instrumentation: callbacks by route and result, queue
// depth by status, attempts by endpoint and outcome, delivery latency, breaker state, transform
// time, visitor sessions and pool use. It observes the other packages; none of them imports it.
package metrics

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/ringgate/ringgate/gateway/delivery"
	"github.com/ringgate/ringgate/gateway/ingress"
	"github.com/ringgate/ringgate/gateway/sessions"
	"github.com/ringgate/ringgate/gateway/store"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// Sources are what the scrape-time gauges read.
type Sources struct {
	Store     store.Store
	Engine    func() *delivery.Engine
	Sessions  *sessions.Service
	Transform func() (calls int64, total time.Duration)
}

// Metrics holds the collectors. It implements delivery.Observer and ingress.Observer.
type Metrics struct {
	reg       *prometheus.Registry
	callbacks *prometheus.CounterVec
	cbSeconds *prometheus.HistogramVec
	attempts  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
}

var (
	_ delivery.Observer = (*Metrics)(nil)
	_ ingress.Observer  = (*Metrics)(nil)
)

// New registers every collector.
func New(src Sources) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.callbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ringgate_twilio_callbacks_total", Help: "Twilio callbacks handled, by route and result (ok, forbidden, bad_request, error, ...).",
	}, []string{"route", "result"})
	m.cbSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "ringgate_twilio_callback_seconds", Help: "Time to answer a Twilio callback (the state made durable).",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .5, 1, 5},
	}, []string{"route"})
	m.attempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ringgate_delivery_attempts_total", Help: "Delivery attempts, by endpoint and the delivery's status after the attempt.",
	}, []string{"endpoint", "outcome"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "ringgate_delivery_attempt_seconds", Help: "Time of one delivery attempt (transform, signing, HTTP exchange).",
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
	}, []string{"endpoint"})
	m.reg.MustRegister(m.callbacks, m.cbSeconds, m.attempts, m.latency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if src.Store != nil {
		m.reg.MustRegister(gaugeFunc("ringgate_deliveries_queued", "Deliveries waiting: pending or retrying (queued) and held by a disabled endpoint.",
			[]string{"status"}, func(emit func(float64, ...string)) {
				counts, err := src.Store.Counts(context.Background())
				if err != nil {
					return
				}
				emit(float64(counts[store.Pending]), "queued")
				emit(float64(counts[store.Held]), "held")
			}))
	}
	if src.Engine != nil {
		m.reg.MustRegister(gaugeFunc("ringgate_endpoint_enabled", "1 while an endpoint is enabled, 0 while its breaker holds it disabled.",
			[]string{"endpoint"}, func(emit func(float64, ...string)) {
				for _, v := range src.Engine().Endpoints() {
					en := 0.0
					if v.State.Enabled {
						en = 1
					}
					emit(en, v.Config.ID)
				}
			}),
			gaugeFunc("ringgate_endpoint_consecutive_failures", "Consecutive failed deliveries of an endpoint (the breaker's count).",
				[]string{"endpoint"}, func(emit func(float64, ...string)) {
					for _, v := range src.Engine().Endpoints() {
						emit(float64(v.State.ConsecutiveFailures), v.Config.ID)
					}
				}))
	}
	if src.Transform != nil {
		m.reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ringgate_transform_calls_total", Help: "Successful transform calls."},
				func() float64 { n, _ := src.Transform(); return float64(n) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ringgate_transform_seconds_total", Help: "Time spent in successful transform calls."},
				func() float64 { _, d := src.Transform(); return d.Seconds() }))
	}
	if src.Sessions != nil {
		m.AddSessions(src.Sessions)
	}
	return m
}

// AddSessions registers the visitor-session and pool gauges (once the tracker exists).
func (m *Metrics) AddSessions(s *sessions.Service) {
	{
		m.reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ringgate_sessions_created_total", Help: "Visitor sessions created."},
				func() float64 { return float64(s.Stats().Created) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ringgate_sessions_refreshed_total", Help: "Visitor session heartbeats."},
				func() float64 { return float64(s.Stats().Refreshed) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ringgate_sessions_crawlers_total", Help: "Session requests from crawlers, answered without a number."},
				func() float64 { return float64(s.Stats().Crawlers) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ringgate_sessions_limited_total", Help: "New sessions refused to an address over tracker.new_sessions_per_minute."},
				func() float64 { return float64(s.Stats().Limited) }),
			gaugeFunc("ringgate_sessions_live", "Visitor sessions holding a pool number now.", nil, func(emit func(float64, ...string)) {
				held := 0
				for _, p := range s.Stats().Pools {
					held += p.Held
				}
				emit(float64(held))
			}),
			gaugeFunc("ringgate_pool_numbers", "Numbers in a campaign's pool, by state (held, free).", []string{"campaign", "state"}, func(emit func(float64, ...string)) {
				for _, p := range s.Stats().Pools {
					c := strconv.FormatInt(p.CampaignID, 10)
					emit(float64(p.Held), c, "held")
					emit(float64(p.Size-p.Held), c, "free")
				}
			}),
			gaugeFunc("ringgate_pool_reuses", "Numbers taken over from a live hold because the pool was exhausted (since start).", []string{"campaign"}, func(emit func(float64, ...string)) {
				for _, p := range s.Stats().Pools {
					emit(float64(p.Reuses), strconv.FormatInt(p.CampaignID, 10))
				}
			}))
	}
}

// Callback implements ingress.Observer.
func (m *Metrics) Callback(route, result string, d time.Duration) {
	m.callbacks.WithLabelValues(route, result).Inc()
	m.cbSeconds.WithLabelValues(route).Observe(d.Seconds())
}

// Attempted implements delivery.Observer.
func (m *Metrics) Attempted(endpoint string, status store.Status, code int, d time.Duration) {
	m.attempts.WithLabelValues(endpoint, string(status)).Inc()
	m.latency.WithLabelValues(endpoint).Observe(d.Seconds())
}

// BreakerChanged implements delivery.Observer (the gauge reads the state at scrape time).
func (m *Metrics) BreakerChanged(endpoint string, enabled bool) {}

// Handler serves the Prometheus text format.
func (m *Metrics) Handler() fasthttp.RequestHandler {
	return fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
}

// gaugeFunc is a gauge vector whose values are read by fn at scrape time.
type collector struct {
	desc *prometheus.Desc
	fn   func(emit func(float64, ...string))
}

func gaugeFunc(name, help string, labels []string, fn func(emit func(float64, ...string))) prometheus.Collector {
	return &collector{desc: prometheus.NewDesc(name, help, labels, nil), fn: fn}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.fn(func(v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, labels...)
	})
}

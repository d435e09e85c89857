package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ringgate/ringgate/gateway/delivery"
	"github.com/ringgate/ringgate/gateway/store"
	badgerstore "github.com/ringgate/ringgate/gateway/store/badger"
	jsstore "github.com/ringgate/ringgate/gateway/store/jetstream"
)

// benchCluster: deliveries per second and end-to-end latency (publish called → request at the
// receiver) through the engine on Badger and on a three-node JetStream cluster (three
// replicas), in the same run and with the same load.
func benchCluster() error {
	fmt.Println("cluster: Badger (one node) beside JetStream (three in-process NATS nodes, replicas 3)")
	var base clusterResult
	for _, backend := range []string{"badger", "jetstream"} {
		r, err := clusterRound(backend)
		if err != nil {
			return fmt.Errorf("%s: %w", backend, err)
		}
		fmt.Printf("  %-10s %7.0f deliveries/s (%d publishers, closed loop)   at %d events/s: p50 %6s  p99 %6s  CPU per delivery %s\n",
			backend, r.rate, clusterPublishers, clusterPaced, r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), r.cpu.Round(time.Microsecond))
		if backend == "badger" {
			base = r
		} else {
			fmt.Printf("  %-10s ratio to Badger: throughput %.2fx, p99 %.1fx\n", "", r.rate/base.rate, float64(r.p99)/float64(base.p99))
		}
	}
	return nil
}

const (
	clusterTotal      = 4000 // events in the throughput run
	clusterPublishers = 32
	clusterPaced      = 200 // events per second in the latency run
	clusterPacedFor   = 5 * time.Second
)

type clusterResult struct {
	rate     float64
	p50, p99 time.Duration
	cpu      time.Duration
}

// timedSink records when each delivery (by webhook-id) arrived.
type timedSink struct {
	mu  sync.Mutex
	at  map[string]time.Time
	n   atomic.Int64
	srv *fasthttp.Server
	url string
}

func newTimedSink() (*timedSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &timedSink{at: map[string]time.Time{}, url: "http://" + ln.Addr().String() + "/hook"}
	s.srv = &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		now := time.Now()
		id := string(ctx.Request.Header.Peek("webhook-id"))
		s.mu.Lock()
		if _, dup := s.at[id]; !dup {
			s.at[id] = now
			s.n.Add(1)
		}
		s.mu.Unlock()
	}}
	go s.srv.Serve(ln)
	return s, nil
}

func clusterRound(backend string) (clusterResult, error) {
	var res clusterResult
	sink, err := newTimedSink()
	if err != nil {
		return res, err
	}
	defer sink.srv.Shutdown()
	dir, _ := os.MkdirTemp("", "ringbench-cluster")
	defer os.RemoveAll(dir)
	var st store.Store
	switch backend {
	case "badger":
		st, err = badgerstore.Open(dir, badgerstore.Options{Logger: quiet})
	default:
		srvs, urls, cerr := jsstore.StartLocalCluster(dir, 3, quiet)
		if cerr != nil {
			return res, cerr
		}
		defer func() {
			for _, s := range srvs {
				s.Shutdown()
			}
		}()
		st, err = jsstore.Open(context.Background(), jsstore.Options{URLs: urls, Replicas: 3, Logger: quiet})
	}
	if err != nil {
		return res, err
	}
	defer st.Close()
	e := delivery.New(delivery.Options{Store: st, Logger: quiet})
	if err := e.Provision(context.Background(), benchConfig(sink.url)); err != nil {
		return res, err
	}
	if err := e.Start(); err != nil {
		return res, err
	}
	defer e.Stop(context.Background())
	ev := sampleEvent()
	type sent struct {
		id string
		at time.Time
	}
	var mu sync.Mutex
	var published []sent
	publish := func() error {
		t := time.Now()
		p, err := e.Publish(context.Background(), ev)
		if err != nil {
			return err
		}
		mu.Lock()
		published = append(published, sent{p.DeliveryIDs[0], t})
		mu.Unlock()
		return nil
	}
	wait := func(n int64) error {
		deadline := time.Now().Add(2 * time.Minute)
		for sink.n.Load() < n {
			if time.Now().After(deadline) {
				return fmt.Errorf("%d of %d deliveries arrived", sink.n.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
		return nil
	}

	// Throughput: publishers in a closed loop, until every delivery has arrived.
	cpu0 := cpuTime()
	start := time.Now()
	var pn atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range clusterPublishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pn.Add(1) <= clusterTotal {
				if err := publish(); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return res, err
	}
	if err := wait(clusterTotal); err != nil {
		return res, err
	}
	res.rate = clusterTotal / time.Since(start).Seconds()
	res.cpu = (cpuTime() - cpu0) / clusterTotal

	// Latency: a steady rate well under both backends' capacity.
	mu.Lock()
	published = published[:0]
	mu.Unlock()
	base := sink.n.Load()
	tick := time.NewTicker(time.Second / clusterPaced)
	n := int(clusterPacedFor.Seconds() * clusterPaced)
	for i := 0; i < n; i++ {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := publish(); err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
		}()
	}
	tick.Stop()
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return res, err
	}
	if err := wait(base + int64(n)); err != nil {
		return res, err
	}
	var lat []time.Duration
	sink.mu.Lock()
	for _, p := range published {
		if at, ok := sink.at[p.id]; ok {
			lat = append(lat, at.Sub(p.at))
		}
	}
	sink.mu.Unlock()
	slices.Sort(lat)
	if len(lat) == 0 {
		return res, fmt.Errorf("no latencies")
	}
	res.p50, res.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	return res, nil
}

package jetstream

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ServerOptions configure a NATS server embedded in the ringgate process. Nodes that list one
// another in Routes form a JetStream cluster: no external service to install.
type ServerOptions struct {
	// Name identifies the node in the cluster (unique per node).
	Name string
	// Listen is the client address ("127.0.0.1:4222"; port 0 picks one; empty: in-process only).
	Listen string
	// ClusterListen is the address other nodes route to ("0.0.0.0:6222"); empty for a lone node.
	ClusterListen string
	// ClusterName is the cluster's name, the same on every node.
	ClusterName string
	// Routes are the other nodes' cluster addresses (nats://host:6222).
	Routes []string
	// StoreDir holds the JetStream data of this node.
	StoreDir string
	Logger   *slog.Logger
}

// StartServer starts an embedded NATS server with JetStream and waits until it accepts
// connections. The caller shuts it down (Server.Shutdown is idempotent).
func StartServer(o ServerOptions) (*server.Server, error) {
	if o.Listen == "" && o.ClusterListen != "" {
		// The server starts routing only once its client listener is up: a clustered node
		// listens on a loopback port of its own choosing.
		o.Listen = "127.0.0.1:0"
	}
	opts := &server.Options{
		ServerName: o.Name,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		DontListen: o.Listen == "",
		// A node answers its peers only when it can store: limits come from the disk.
		JetStreamMaxMemory: 256 << 20,
	}
	if o.Listen != "" {
		host, port, err := splitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("storage.jetstream.listen: %w", err)
		}
		opts.Host, opts.Port = host, port
		if port == 0 {
			opts.Port = server.RANDOM_PORT
		}
	}
	if o.ClusterListen != "" {
		host, port, err := splitHostPort(o.ClusterListen)
		if err != nil {
			return nil, fmt.Errorf("storage.jetstream.cluster_listen: %w", err)
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
		opts.Cluster = server.ClusterOpts{Name: o.ClusterName, Host: host, Port: port}
		for _, r := range o.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("storage.jetstream.routes: %q: %w", r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	if o.Logger != nil {
		s.SetLoggerV2(natsLogger{o.Logger.With("component", "nats")}, false, false, false)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded NATS server %q did not become ready within 30s", o.Name)
	}
	return s, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return host, port, nil
}

// natsLogger sends the server's log lines to slog; its notices are debug-level chatter for a
// gateway's operator, its warnings and errors are not.
type natsLogger struct{ l *slog.Logger }

func (n natsLogger) Noticef(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n natsLogger) Warnf(format string, v ...any)   { n.l.Warn(fmt.Sprintf(format, v...)) }
func (n natsLogger) Fatalf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Errorf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Debugf(format string, v ...any)  {}
func (n natsLogger) Tracef(format string, v ...any)  {}

// StartLocalCluster starts n embedded servers on 127.0.0.1 that form one JetStream cluster,
// with their data under dir, and waits until it has a meta leader. It returns the servers and
// their client URLs. Tests and benchmarks use it; a deployment runs one node per machine.
func StartLocalCluster(dir string, n int, log *slog.Logger) ([]*server.Server, []string, error) {
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	var srvs []*server.Server
	var urls []string
	stop := func() {
		for _, s := range srvs {
			s.Shutdown()
		}
	}
	for i := range n {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
		}
		s, err := StartServer(ServerOptions{
			Name: fmt.Sprintf("n%d", i+1), Listen: "127.0.0.1:0", ClusterListen: fmt.Sprintf("127.0.0.1:%d", ports[i]),
			ClusterName: "ringgate-test", Routes: routes, StoreDir: fmt.Sprintf("%s/n%d", dir, i+1), Logger: log,
		})
		if err != nil {
			stop()
			return nil, nil, err
		}
		srvs = append(srvs, s)
		urls = append(urls, s.ClientURL())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ready := true
		for _, s := range srvs {
			ready = ready && s.JetStreamIsCurrent()
		}
		if ready {
			return srvs, urls, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, nil, fmt.Errorf("the %d-node JetStream cluster elected no leader within 30s", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package gateway_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ringgate/ringgate/gateway"
	"github.com/ringgate/ringgate/gateway/events"
)

// testCA makes a CA and a server certificate for 127.0.0.1 signed by it; the CA goes to a PEM
// file, as an operator would give it.
func testCA(t *testing.T, dir string) (caFile string, serverTLS *tls.Config) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ringgate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	return caFile, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

// A gateway reaches an external NATS server over TLS, trusting the CA of storage.jetstream.tls.
// startNATS starts a JetStream-enabled NATS server on a loopback port with o's other options,
// stopped when the test ends, and waits until it takes connections.
func startNATS(t *testing.T, o server.Options) *server.Server {
	t.Helper()
	o.Host, o.Port, o.JetStream, o.NoSigs = "127.0.0.1", server.RANDOM_PORT, true, true
	srv, err := server.NewServer(&o)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	return srv
}

// natsYAML is a config on a JetStream store at url (jetstream options after the urls in
// extra) with one endpoint at recvURL taking call.completed.
func natsYAML(path, url, extra, recvURL string) string {
	return testYAML(fmt.Sprintf("{path: %q, backend: jetstream, jetstream: {urls: [%q]%s}}", path, url, extra), fmt.Sprintf(`
delivery: {allow_http: true, allow_private_networks: true}
workspaces:
  - id: 1
    name: My Workspace
    endpoints: [{id: crm, url: %q, events: [call.completed]}]
`, recvURL))
}

func TestJetStreamOverTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, srvTLS := testCA(t, dir)
	srv := startNATS(t, server.Options{StoreDir: filepath.Join(dir, "js"), TLS: true, TLSConfig: srvTLS, TLSTimeout: 2})
	recv := newReceiver(t)
	y := natsYAML(dir, srv.ClientURL(), fmt.Sprintf(", tls: {ca: %q}", caFile), recv.URL)
	g, _ := runGateway(t, y, gateway.Options{})
	ev, _ := events.Sample(events.CallCompleted, events.Workspace{ID: 1, Name: "My Workspace"}, time.Now())
	if _, err := g.Publish(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the delivery over a TLS-connected store", func() bool { return recv.count() == 1 })

	// Readiness follows the store: a balancer stops sending callbacks to a node whose NATS is
	// gone.
	readyz := func() int {
		resp, err := http.Get("http://" + g.Addr() + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := readyz(); code != 200 {
		t.Fatalf("readyz %d with NATS up", code)
	}
	// Backups of a JetStream store are NATS's to take.
	if resp, body := adminGet(t, g, "/api/v1/backup"); resp.StatusCode != 501 {
		t.Fatalf("backup on JetStream: %d %s", resp.StatusCode, body)
	}
	srv.Shutdown()
	eventually(t, "readyz to answer 503 with NATS down", func() bool { return readyz() == 503 })
}

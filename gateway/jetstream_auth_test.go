package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/ringgate/ringgate/gateway"
	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/events"
)

// natsAccount is an account of an operator-mode NATS deployment, able to issue user credentials.
type natsAccount struct {
	t   *testing.T
	key nkeys.KeyPair
	pub string
	jwt string
}

func newNATSAccount(t *testing.T, operator nkeys.KeyPair, name string, jetstream bool) natsAccount {
	t.Helper()
	key, _ := nkeys.CreateAccount()
	pub, _ := key.PublicKey()
	claims := jwt.NewAccountClaims(pub)
	claims.Name = name
	if jetstream {
		claims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	}
	token, err := claims.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	return natsAccount{t, key, pub, token}
}

// creds writes a .creds file for a new user of the account, as `nsc` would.
func (a natsAccount) creds(dir, name string) string {
	a.t.Helper()
	user, _ := nkeys.CreateUser()
	pub, _ := user.PublicKey()
	claims := jwt.NewUserClaims(pub)
	claims.Name = name
	token, err := claims.Encode(a.key)
	if err != nil {
		a.t.Fatal(err)
	}
	seed, _ := user.Seed()
	b, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		a.t.Fatal(err)
	}
	f := filepath.Join(dir, name+".creds")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		a.t.Fatal(err)
	}
	return f
}

// A NATS server in operator mode (JWT accounts) takes a node that presents its user's
// credentials file (storage.jetstream.credentials), and refuses one whose account it does not
// trust, with the reason.
func TestJetStreamWithCredentials(t *testing.T) {
	dir := t.TempDir()
	operator, _ := nkeys.CreateOperator()
	opub, _ := operator.PublicKey()
	sys := newNATSAccount(t, operator, "SYS", false)
	app := newNATSAccount(t, operator, "RINGGATE", true)
	oc := jwt.NewOperatorClaims(opub)
	oc.Name = "test"
	oc.SystemAccount = sys.pub
	resolver := &server.MemAccResolver{}
	for _, a := range []natsAccount{sys, app} {
		if err := resolver.Store(a.pub, a.jwt); err != nil {
			t.Fatal(err)
		}
	}
	srv := startNATS(t, server.Options{StoreDir: filepath.Join(dir, "js"), TrustedOperators: []*jwt.OperatorClaims{oc},
		SystemAccount: sys.pub, AccountResolver: resolver})
	recv := newReceiver(t)
	cfgFor := func(creds string) string {
		extra := ""
		if creds != "" {
			extra = fmt.Sprintf(", credentials: %q", creds)
		}
		return natsYAML(filepath.Join(dir, "node"), srv.ClientURL(), extra, recv.URL)
	}

	g, _ := runGateway(t, cfgFor(app.creds(dir, "node-1")), gateway.Options{})
	ev, _ := events.Sample(events.CallCompleted, events.Workspace{ID: 1, Name: "My Workspace"}, time.Now())
	if _, err := g.Publish(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the delivery through a store reached with credentials", func() bool { return recv.count() == 1 })

	// A user of an account the operator did not sign, and no credentials at all, are refused.
	stranger, _ := nkeys.CreateOperator()
	for name, creds := range map[string]string{
		"untrusted account": newNATSAccount(t, stranger, "OTHER", true).creds(dir, "stranger"),
		"no credentials":    "",
	} {
		cfg, err := config.Parse([]byte(cfgFor(creds)), "test.yaml", func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		g2, err := gateway.New(cfg, gateway.Options{Logger: quiet()})
		if err == nil {
			err = g2.Start()
			g2.Shutdown(ctx)
		}
		cancel()
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
			t.Errorf("%s: got %v, want an authorization violation", name, err)
		}
	}
}

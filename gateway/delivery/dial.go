package delivery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/ringgate/ringgate/gateway/config"
)

// ErrForbiddenAddress is wrapped by dial errors for addresses the SSRF guard refuses.
var ErrForbiddenAddress = errors.New("forbidden address")

// Resolver looks up a host's addresses; net.DefaultResolver in production.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Dialer dials endpoints safely: it resolves the host itself, refuses loopback, private,
// link-local, CGNAT, metadata and other non-public addresses (unless AllowPrivate), and dials
// exactly the address it checked, so a DNS answer cannot change between check and use.
type Dialer struct {
	Resolver     Resolver
	AllowPrivate bool
}

// Dial matches fasthttp.DialFuncWithTimeout.
func (d *Dialer) Dial(addr string, timeout time.Duration) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		r := d.Resolver
		if r == nil {
			r = net.DefaultResolver
		}
		ips, err = r.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
	}
	var refused error
	var nd net.Dialer
	var lastErr error
	for _, ip := range ips {
		if !d.AllowPrivate {
			if reason := config.ForbiddenAddr(ip); reason != "" {
				refused = fmt.Errorf("%w: %s resolves to %s, a %s address", ErrForbiddenAddress, host, ip.Unmap(), reason)
				continue
			}
		}
		conn, err := nd.DialContext(ctx, "tcp", net.JoinHostPort(ip.Unmap().String(), port))
		if err == nil {
			return conn, nil
		}
		lastErr = err
	}
	if lastErr != nil {
		return nil, lastErr
	}
	if refused != nil {
		return nil, refused
	}
	return nil, fmt.Errorf("resolve %s: no addresses", host)
}

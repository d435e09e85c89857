package httpx

import (
	"net"
	"net/netip"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, c := range []struct {
		name, peer, xff, want string
		trusted               []netip.Prefix
	}{
		{"direct", "203.0.113.7", "", "203.0.113.7", trusted},
		{"direct, forged header", "203.0.113.7", "198.51.100.1", "203.0.113.7", trusted},
		{"no proxies trusted", "127.0.0.1", "198.51.100.1", "127.0.0.1", nil},
		{"one proxy", "127.0.0.1", "198.51.100.1", "198.51.100.1", trusted},
		{"two proxies", "127.0.0.1", "198.51.100.1, 10.1.2.3", "198.51.100.1", trusted},
		{"a forged entry left of the client's", "127.0.0.1", "1.2.3.4, 198.51.100.1,10.1.2.3", "198.51.100.1", trusted},
		{"only proxies", "127.0.0.1", "10.9.9.9, 10.1.2.3", "10.9.9.9", trusted},
		{"proxy without the header", "10.0.0.5", "", "10.0.0.5", trusted},
		{"a port", "127.0.0.1", "198.51.100.1:4711", "198.51.100.1", trusted},
		{"IPv6 with a port", "127.0.0.1", "[2001:db8::1]:4711", "2001:db8::1", trusted},
		{"IPv6 proxy", "fd00::1", "2001:db8::2", "2001:db8::2", trusted},
		{"IPv4-mapped", "::ffff:127.0.0.1", "::ffff:198.51.100.1", "198.51.100.1", trusted},
		{"malformed: the last good address", "127.0.0.1", "198.51.100.1, unknown", "127.0.0.1", trusted},
		{"malformed behind a proxy", "127.0.0.1", "garbage, 10.1.2.3", "10.1.2.3", trusted},
		{"empty entries", "127.0.0.1", " , ", "127.0.0.1", trusted},
	} {
		var req fasthttp.Request
		if c.xff != "" {
			req.Header.Set("X-Forwarded-For", c.xff)
		}
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, &net.TCPAddr{IP: net.ParseIP(c.peer), Port: 50000}, nil)
		if got := ClientAddr(&ctx, c.trusted); got.String() != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

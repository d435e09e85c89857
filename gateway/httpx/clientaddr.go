package httpx

import (
	"bytes"
	"net/netip"

	"github.com/valyala/fasthttp"
)

// ClientAddr returns the address of the client behind a request. It is the peer's, unless the
// peer is one of the trusted proxies: then X-Forwarded-For is read from the right (each proxy
// appends the address it was reached from) and the first address that is not a trusted proxy's
// is the client's. Entries a proxy did not write cannot be trusted, so nothing left of that one
// is read, and a malformed entry ends the walk at the last good address.
func ClientAddr(ctx *fasthttp.RequestCtx, trusted []netip.Prefix) netip.Addr {
	peer, _ := netip.AddrFromSlice(ctx.RemoteIP())
	addr := peer.Unmap()
	if !within(addr, trusted) {
		return addr
	}
	xff := ctx.Request.Header.Peek("X-Forwarded-For")
	for len(xff) > 0 {
		var entry []byte
		if i := bytes.LastIndexByte(xff, ','); i >= 0 {
			entry, xff = xff[i+1:], xff[:i]
		} else {
			entry, xff = xff, nil
		}
		a, ok := parseForwarded(bytes.TrimSpace(entry))
		if !ok {
			return addr
		}
		addr = a
		if !within(addr, trusted) {
			return addr
		}
	}
	return addr
}

func within(a netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseForwarded reads one X-Forwarded-For entry: an address, or an address with a port
// ("203.0.113.7:4711", "[2001:db8::1]:4711"), as some proxies write.
func parseForwarded(b []byte) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(string(b)); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(string(b)); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

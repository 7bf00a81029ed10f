package auth

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ClientIP resolves the client address of a request: the connection's peer,
// unless that peer is a trusted proxy, in which case X-Forwarded-For is read
// from the right, skipping trusted proxies (SPEC §9 --trusted-proxies).
type ClientIP struct {
	trusted []netip.Prefix
}

// NewClientIP trusts the given proxies.
func NewClientIP(trusted []netip.Prefix) *ClientIP { return &ClientIP{trusted: trusted} }

func (c *ClientIP) isTrusted(a netip.Addr) bool {
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func peer(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// Of returns the client's IP as a string.
func (c *ClientIP) Of(r *http.Request) string {
	a, ok := peer(r)
	if !ok {
		return r.RemoteAddr
	}
	if !c.isTrusted(a) {
		return a.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // a malformed hop: stop trusting the chain
		}
		h = h.Unmap()
		if !c.isTrusted(h) {
			return h.String()
		}
		a = h
	}
	return a.String()
}

// TLS reports whether the client reached us over TLS (directly, or through a
// trusted proxy that says so in X-Forwarded-Proto).
func (c *ClientIP) TLS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if a, ok := peer(r); ok && c.isTrusted(a) {
		return strings.EqualFold(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto")), "https")
	}
	return false
}

// LimitKey is the rate-limit bucket of a client address: the address itself
// for IPv4, its /64 for IPv6 (one host usually owns a whole /64, so keying by
// full address would let it rotate past the limit).
func LimitKey(client string) string {
	a, err := netip.ParseAddr(client)
	if err != nil || !a.Is6() || a.Is4In6() {
		return client
	}
	p, _ := a.Prefix(64)
	return p.String()
}

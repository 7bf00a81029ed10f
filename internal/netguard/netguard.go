package netguard

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// ErrRefused is wrapped by every error that refuses an address or a host on
// policy grounds: CheckAddr, the address part of CheckURL, and DialContext when
// no resolved address is allowed. Test for it with errors.Is. Errors about
// malformed input, failed lookups or failed connects do not wrap it.
var ErrRefused = errors.New("netguard: address refused")

// Resolver looks up the IP addresses of a host name. It is satisfied by
// *net.Resolver; tests inject a fake. network is "ip", "ip4" or "ip6".
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// DialFunc connects to an address that has already been checked. addr is
// always an IP literal with a port ("192.0.2.1:443", "[2001:db8::1]:443") and
// network is "tcp", "tcp4" or "tcp6"; a DialFunc must not resolve anything.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Options configures a Guard. The zero value is the production default:
// private addresses refused, the system resolver, the default dialer.
type Options struct {
	// AllowPrivate turns the address policy off (--allow-private-agents):
	// every valid address and the "localhost" names are allowed. URLs must
	// still be well-formed http or https without user info.
	AllowPrivate bool
	// Resolver resolves host names; nil means net.DefaultResolver.
	Resolver Resolver
	// Dial connects to a checked IP address; nil means a net.Dialer with a
	// 10 s connect timeout and 30 s TCP keep-alive.
	Dial DialFunc
	// OnRefuse, if set, is called once for every refused address, so that the
	// caller can record a security event: host as the caller gave it, the
	// refused IP (the zero Addr when a name such as "localhost" was refused
	// without resolving it) and the reason category ("loopback", "private",
	// "link-local (cloud metadata)", …). DialContext calls it for each refused
	// resolved address and CheckURL for a refused literal or name; CheckAddr
	// never calls it. It may be called concurrently and must not block.
	OnRefuse func(host string, ip netip.Addr, reason string)
}

// Connect timeout and keep-alive of the default dialer.
const (
	defaultConnectTimeout = 10 * time.Second
	defaultKeepAlive      = 30 * time.Second
)

// minAttemptBudget is the least time one connect attempt gets when a context
// deadline is shared among several allowed addresses (unless less remains).
const minAttemptBudget = 2 * time.Second

// Guard applies the agent address policy to URLs, addresses and outgoing
// connections. Create it with New; it is immutable and safe for concurrent
// use.
type Guard struct {
	allowPrivate bool
	resolver     Resolver
	dial         DialFunc
	onRefuse     func(host string, ip netip.Addr, reason string)
	// shared is the transport behind every Client, so clients share one
	// connection pool.
	shared *http.Transport
}

// New returns a Guard configured by o, filling in the defaults documented on
// Options.
func New(o Options) *Guard {
	g := &Guard{
		allowPrivate: o.AllowPrivate,
		resolver:     o.Resolver,
		dial:         o.Dial,
		onRefuse:     o.OnRefuse,
	}
	if g.resolver == nil {
		g.resolver = net.DefaultResolver
	}
	if g.dial == nil {
		d := &net.Dialer{Timeout: defaultConnectTimeout, KeepAlive: defaultKeepAlive}
		g.dial = d.DialContext
	}
	g.shared = g.Transport()
	return g
}

// refusal is the error type of every policy refusal; it matches ErrRefused
// under errors.Is while keeping its own message.
type refusal struct{ msg string }

func (e *refusal) Error() string { return e.msg }

func (e *refusal) Is(target error) bool { return target == ErrRefused }

// refused reports a refusal to the OnRefuse hook, if any.
func (g *Guard) refused(host string, ip netip.Addr, reason string) {
	if g.onRefuse != nil {
		g.onRefuse(host, ip, reason)
	}
}

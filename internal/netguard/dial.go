package netguard

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DialContext connects to addr ("host:port") over TCP ("tcp", "tcp4" or
// "tcp6") after applying the address policy. It has the signature of
// net.Dialer.DialContext so that it can serve as http.Transport.DialContext.
//
// A host name is resolved once, with Options.Resolver; an IP literal is not
// resolved. Every resolved address is checked: refused ones are reported to
// Options.OnRefuse and never passed to Options.Dial. The allowed addresses are
// then dialed by IP, in the resolver's order, until one connects; the name is
// never resolved again, so DNS rebinding between the check and the connect is
// impossible. When the context has a deadline it is shared among the allowed
// addresses, each getting at least 2 s (or what remains), as net.Dialer does.
//
// If every address is refused, the error wraps ErrRefused and names the host
// and each refused address with its reason. Lookup failures and connect
// failures are returned wrapped (errors.As finds *net.DNSError or
// *net.OpError) and do not wrap ErrRefused; after failed connects, the first
// connect error is returned.
func (g *Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var lookupNet string
	switch network {
	case "tcp":
		lookupNet = "ip"
	case "tcp4":
		lookupNet = "ip4"
	case "tcp6":
		lookupNet = "ip6"
	default:
		return nil, fmt.Errorf("netguard: dial %s %q: only tcp, tcp4 and tcp6 are supported", network, addr)
	}
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("netguard: dial %q: %w", addr, err)
	}
	if host == "" {
		// net.Dial would read an empty host as the local system.
		return nil, fmt.Errorf("netguard: dial %q: missing host", addr)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("netguard: dial %q: port must be a number from 1 to 65535", addr)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("netguard: dial %q: %w", addr, err)
	}

	ips, err := g.lookup(ctx, lookupNet, host)
	if err != nil {
		return nil, err
	}

	allowed := make([]netip.Addr, 0, len(ips))
	var refused []string
	for _, ip := range ips {
		if r := g.reason(ip); r != "" {
			g.refused(host, ip, r)
			refused = append(refused, fmt.Sprintf("%s: %s", ip, r))
			continue
		}
		if ip.Is4In6() {
			ip = ip.Unmap() // dial the IPv4 address it stands for
		}
		if network == "tcp4" && !ip.Is4() || network == "tcp6" && !ip.Is6() {
			continue
		}
		if !slices.Contains(allowed, ip) {
			allowed = append(allowed, ip)
		}
	}
	if len(allowed) == 0 {
		if len(refused) > 0 {
			return nil, &refusal{msg: fmt.Sprintf("netguard: refused to connect to %q: every address is forbidden (%s)", host, strings.Join(refused, "; "))}
		}
		return nil, fmt.Errorf("netguard: dial %q: no %s address for host", addr, network)
	}
	return g.dialSerial(ctx, network, host, allowed, uint16(port))
}

// lookup returns the addresses of host: the literal itself, or the resolver's
// answer.
func (g *Guard) lookup(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	ips, err := g.resolver.LookupNetIP(ctx, network, host)
	if err != nil {
		return nil, fmt.Errorf("netguard: resolve %q: %w", host, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("netguard: resolve %q: %w", host, err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("netguard: resolve %q: no addresses", host)
	}
	return ips, nil
}

// dialSerial dials the checked addresses in order until one connects.
func (g *Guard) dialSerial(ctx context.Context, network, host string, ips []netip.Addr, port uint16) (net.Conn, error) {
	var firstErr error
	for i, ip := range ips {
		if err := ctx.Err(); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			break
		}
		attemptCtx, cancel := ctx, context.CancelFunc(func() {})
		if deadline, ok := ctx.Deadline(); ok {
			attemptCtx, cancel = context.WithTimeout(ctx, attemptBudget(time.Until(deadline), len(ips)-i, minAttemptBudget))
		}
		conn, err := g.dial(attemptCtx, network, netip.AddrPortFrom(ip, port).String())
		cancel()
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, fmt.Errorf("netguard: connect to %q: %w", host, firstErr)
}

// attemptBudget shares the time remaining among the addresses remaining,
// giving each attempt at least minimum unless less than that remains.
func attemptBudget(remaining time.Duration, addrsRemaining int, minimum time.Duration) time.Duration {
	budget := remaining / time.Duration(addrsRemaining)
	if budget < minimum {
		budget = min(minimum, remaining)
	}
	return budget
}

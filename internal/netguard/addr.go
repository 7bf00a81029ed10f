package netguard

import (
	"fmt"
	"net/netip"
)

// Reason categories, as passed to Options.OnRefuse and shown in messages.
const (
	reasonUnspecified = "unspecified"
	reasonLoopback    = "loopback"
	reasonPrivate     = "private"
	reasonCGNAT       = "CGNAT"
	reasonLinkLocal4  = "link-local (cloud metadata)"
	reasonLinkLocal6  = "link-local"
	reasonMulticast   = "multicast"
	reasonBroadcast   = "broadcast"
	reasonReserved    = "reserved"
	reasonInvalid     = "invalid"
	reasonLocalName   = "loopback name"
)

type forbiddenRange struct {
	prefix netip.Prefix
	reason string
}

// forbidden4 lists the refused IPv4 ranges. The first match wins, so the
// broadcast address precedes the reserved block that contains it.
var forbidden4 = []forbiddenRange{
	{netip.MustParsePrefix("0.0.0.0/8"), reasonUnspecified}, // "this network"; 0.0.0.0 reaches the local host
	{netip.MustParsePrefix("10.0.0.0/8"), reasonPrivate},
	{netip.MustParsePrefix("100.64.0.0/10"), reasonCGNAT},
	{netip.MustParsePrefix("127.0.0.0/8"), reasonLoopback},
	{netip.MustParsePrefix("169.254.0.0/16"), reasonLinkLocal4},
	{netip.MustParsePrefix("172.16.0.0/12"), reasonPrivate},
	{netip.MustParsePrefix("192.168.0.0/16"), reasonPrivate},
	{netip.MustParsePrefix("224.0.0.0/4"), reasonMulticast},
	{netip.MustParsePrefix("255.255.255.255/32"), reasonBroadcast},
	{netip.MustParsePrefix("240.0.0.0/4"), reasonReserved},
}

// forbidden6 lists the refused native IPv6 ranges. IPv4-mapped and NAT64
// addresses never reach it: they are judged by their embedded IPv4 address.
var forbidden6 = []forbiddenRange{
	{netip.MustParsePrefix("::/128"), reasonUnspecified},
	{netip.MustParsePrefix("::1/128"), reasonLoopback},
	{netip.MustParsePrefix("64:ff9b:1::/48"), reasonPrivate}, // local-use NAT64 (RFC 8215)
	{netip.MustParsePrefix("fc00::/7"), reasonPrivate},       // unique local
	{netip.MustParsePrefix("fe80::/10"), reasonLinkLocal6},   // link-local unicast
	{netip.MustParsePrefix("fec0::/10"), reasonPrivate},      // site-local (deprecated, still private)
	{netip.MustParsePrefix("ff00::/8"), reasonMulticast},
}

// nat64 is the well-known NAT64 prefix (RFC 6052): 64:ff9b::a.b.c.d reaches
// a.b.c.d through a NAT64 gateway.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// embeddedIPv4 returns the IPv4 address that ip stands for, if any: ip itself,
// the address inside an IPv4-mapped address, or the one inside a NAT64
// address.
func embeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	ip = ip.Unmap()
	if ip.Is4() {
		return ip, true
	}
	if nat64.Contains(ip) {
		b := ip.As16()
		return netip.AddrFrom4([4]byte(b[12:])), true
	}
	return netip.Addr{}, false
}

// classify returns the reason category ip is forbidden for, or "" if it is a
// public address. The zone of a scoped address is ignored.
func classify(ip netip.Addr) string {
	if !ip.IsValid() {
		return reasonInvalid
	}
	ip = ip.WithZone("")
	table := forbidden6
	if v4, ok := embeddedIPv4(ip); ok {
		ip, table = v4, forbidden4
	}
	for _, r := range table {
		if r.prefix.Contains(ip) {
			return r.reason
		}
	}
	return ""
}

// reason returns why ip is refused under g's policy, or "" if it is allowed.
// An invalid Addr is refused even when private addresses are allowed.
func (g *Guard) reason(ip netip.Addr) string {
	if !ip.IsValid() {
		return reasonInvalid
	}
	if g.allowPrivate {
		return ""
	}
	return classify(ip)
}

// CheckAddr reports why ip is refused: nil if ip is allowed, otherwise an
// error wrapping ErrRefused whose message names the address and the reason
// category. Refused, unless AllowPrivate:
//
//   - unspecified: 0.0.0.0/8, ::
//   - loopback: 127.0.0.0/8, ::1
//   - private: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7 (unique
//     local), fec0::/10 (deprecated site-local), 64:ff9b:1::/48 (local-use
//     NAT64)
//   - CGNAT: 100.64.0.0/10
//   - link-local (cloud metadata): 169.254.0.0/16; link-local: fe80::/10
//   - multicast: 224.0.0.0/4, ff00::/8
//   - broadcast: 255.255.255.255; reserved: the rest of 240.0.0.0/4
//
// IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) addresses are
// judged by the IPv4 address they embed; a zone is ignored. With AllowPrivate
// every valid address is allowed; the zero Addr is always refused. CheckAddr
// does not call Options.OnRefuse.
func (g *Guard) CheckAddr(ip netip.Addr) error {
	r := g.reason(ip)
	if r == "" {
		return nil
	}
	if r == reasonInvalid {
		return &refusal{msg: "netguard: refused invalid address"}
	}
	return &refusal{msg: fmt.Sprintf("netguard: refused %s address %s", r, ip)}
}

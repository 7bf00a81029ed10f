// Package netguard decides which agent addresses agentplane may connect to,
// and is the only way agentplane opens outgoing connections to agents (registry
// health probes today, the A2A gateway later).
//
// It owns three things:
//
//   - the agent URL check run at registration ([Guard.CheckURL]): http or https
//     only, a syntactically strict ASCII host, no user info, no fragment, a
//     numeric port in range, a length cap, and, unless private agents are
//     allowed, no IP literal in a forbidden range and no "localhost" name;
//   - the address policy ([Guard.CheckAddr]): loopback, private, link-local
//     (cloud metadata), CGNAT, multicast, unspecified, broadcast and reserved
//     addresses are refused unless [Options].AllowPrivate is set (the
//     --allow-private-agents flag, off by default). IPv4-mapped and NAT64
//     IPv6 addresses are judged by the IPv4 address they embed;
//   - the dialer and HTTP client built on it ([Guard.DialContext],
//     [Guard.Transport], [Guard.Client]), which apply the policy at connect time.
//
// The check at connect time is what makes the policy hold: a registered host
// name may later resolve anywhere (DNS rebinding). DialContext therefore
// resolves a name once per connection, checks every address it got, and
// connects to the allowed ones by IP, so the address that was checked is the
// address that is connected to.
//
// What this package must never do:
//
//   - connect to an address before it has been checked, or resolve a name a
//     second time between the check and the connect;
//   - follow HTTP redirects (a redirect is an easy way to point a checked URL
//     at a forbidden one); the 3xx response goes back to the caller;
//   - use a proxy, in particular one taken from HTTP_PROXY/HTTPS_PROXY, since
//     the proxy, not this dialer, would then choose the destination;
//   - dial anything other than TCP (no Unix sockets, no UDP);
//   - keep package-level state, log, or import other agentplane packages: it
//     is a leaf, configured only through Options, and reports refusals through
//     errors wrapping [ErrRefused] and the [Options].OnRefuse hook.
//
// Tests inject Options.Resolver and Options.Dial, so no test opens a
// connection outside 127.0.0.0/8.
package netguard

package netguard

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// MaxURLLength is the longest agent URL CheckURL accepts, in bytes.
const MaxURLLength = 2048

// Host name limits (RFC 1035), excluding an optional trailing dot.
const (
	maxHostLength  = 253
	maxLabelLength = 63
)

// privateHint ends every address refusal shown to a user.
const privateHint = "agent URLs must point to public addresses unless the server runs with --allow-private-agents"

// urlError is a CheckURL failure. Its message is written to follow the field
// name ("url: <message>"). A refused address matches ErrRefused.
type urlError struct {
	msg     string
	refused bool
}

func (e *urlError) Error() string { return e.msg }

func (e *urlError) Is(target error) bool { return e.refused && target == ErrRefused }

func invalidURL(format string, args ...any) error {
	return &urlError{msg: fmt.Sprintf(format, args...)}
}

// CheckURL validates an agent URL for registration and returns it parsed by
// url.Parse. It requires:
//
//   - at most MaxURLLength bytes, no spaces or control characters;
//   - an absolute URL with the http or https scheme and a host;
//   - no user info ("user:pass@") and no fragment ("#…");
//   - a port, if present, that is a number from 1 to 65535;
//   - an ASCII host: a host name of letters, digits, '-', '_' and '.'
//     (international names in their xn-- form), a dotted-quad IPv4 address, or
//     a bracketed IPv6 address without a zone;
//   - unless AllowPrivate: no IP literal that CheckAddr refuses (IPv4-mapped
//     and NAT64 forms included) and no "localhost" or "*.localhost" name.
//
// A host whose last label is a number ("2130706433", "0x7f.1", "127.1",
// "127.0.0.1.") is read as an IPv4 address by browsers and by C resolvers but
// not by net/netip; such a host is refused unless it is a canonical dotted
// quad, whatever AllowPrivate says, so that every component agrees on what the
// host means.
//
// The error message is meant for the user and is written to follow the field
// name, as in fault.Invalid("url", "%s", err). An error about the address
// (not the syntax) wraps ErrRefused, and CheckURL reports it to
// Options.OnRefuse. CheckURL does no DNS lookup: a name that resolves to a
// forbidden address is refused when DialContext connects.
func (g *Guard) CheckURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, invalidURL("is required")
	}
	if len(raw) > MaxURLLength {
		return nil, invalidURL("is too long (%d bytes; the limit is %d)", len(raw), MaxURLLength)
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c == 0x7f {
			return nil, invalidURL("must not contain spaces or control characters")
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, invalidURL("is not a valid URL: %v", err)
	}
	if u.Scheme == "" {
		return nil, invalidURL("must be an absolute http or https URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, invalidURL("scheme %s is not allowed; use http or https", short(u.Scheme))
	}
	if u.User != nil {
		return nil, invalidURL("must not contain a user name or password")
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, invalidURL("must include a host, as in https://agent.example.com/")
	}
	if strings.Contains(raw, "#") {
		return nil, invalidURL("must not contain a fragment (#…)")
	}
	if strings.HasSuffix(u.Host, ":") {
		return nil, invalidURL("port must be a number from 1 to 65535")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return nil, invalidURL("port must be a number from 1 to 65535")
		}
	}
	host := u.Hostname()
	if host == "" {
		return nil, invalidURL("must include a host, as in https://agent.example.com/")
	}
	for i := 0; i < len(host); i++ {
		if host[i] >= 0x80 {
			return nil, invalidURL("host must be ASCII; write international names in their xn-- (punycode) form")
		}
	}
	if strings.HasPrefix(u.Host, "[") {
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() {
			return nil, invalidURL("host %s is not a valid IPv6 address", short(host))
		}
		if ip.Zone() != "" {
			return nil, invalidURL("host must not contain an IPv6 zone (%%25…); zones name interfaces of one machine")
		}
		return g.literal(u, host, ip)
	}
	if endsInNumber(host) {
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is4() || ip.String() != host {
			return nil, invalidURL("host %s looks like an IPv4 address in a non-standard form; write it as four decimal numbers, as in 203.0.113.7", short(host))
		}
		return g.literal(u, host, ip)
	}
	if !validHostName(host) {
		return nil, invalidURL("host %s is not a valid host name", short(host))
	}
	if !g.allowPrivate && isLocalhostName(host) {
		g.refused(host, netip.Addr{}, reasonLocalName)
		return nil, &urlError{refused: true, msg: fmt.Sprintf("host %s is a loopback name; %s", short(host), privateHint)}
	}
	return u, nil
}

// literal applies the address policy to the IP-literal host of u.
func (g *Guard) literal(u *url.URL, host string, ip netip.Addr) (*url.URL, error) {
	r := g.reason(ip)
	if r == "" {
		return u, nil
	}
	g.refused(host, ip, r)
	return nil, &urlError{refused: true, msg: fmt.Sprintf("host %s is not allowed (%s address); %s", short(host), r, privateHint)}
}

// endsInNumber reports whether the last label of host (ignoring one trailing
// dot) is a decimal number or a 0x-prefixed hexadecimal number: the WHATWG URL
// rule for hosts that browsers parse as IPv4 addresses.
func endsInNumber(host string) bool {
	host = strings.TrimSuffix(host, ".")
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	if len(last) >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X') {
		return strings.Trim(last[2:], "0123456789abcdefABCDEF") == ""
	}
	return strings.Trim(last, "0123456789") == ""
}

// validHostName reports whether host is a syntactically valid DNS name: labels
// of 1 to 63 letters, digits, '-' or '_', not starting or ending with '-', at
// most 253 bytes, with an optional trailing dot.
func validHostName(host string) bool {
	host = strings.TrimSuffix(host, ".")
	if host == "" || len(host) > maxHostLength {
		return false
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" || len(label) > maxLabelLength || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// isLocalhostName reports whether host is "localhost" or a name under it
// (RFC 6761), in any case and with or without a trailing dot.
func isLocalhostName(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// short quotes s for a message, cut to a readable length.
func short(s string) string {
	const limit = 64
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "…"
	}
	return strconv.Quote(s)
}

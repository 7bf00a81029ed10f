package netguard_test

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentplane/agentplane/internal/netguard"
)

// FuzzCheckURL checks that CheckURL never panics and never accepts, with
// private addresses refused, a URL whose host is (or would be read by a
// browser or a C resolver as) a forbidden address or a loopback name. Seeds
// live in testdata/fuzz/FuzzCheckURL.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{
		"https://agent.example.com/",
		"http://127.0.0.1:8080/",
		"http://[::ffff:169.254.169.254]/",
		"http://0x7f.1/",
	} {
		f.Add(s)
	}
	strict := netguard.New(netguard.Options{})
	permissive := netguard.New(netguard.Options{AllowPrivate: true})

	f.Fuzz(func(t *testing.T, raw string) {
		_, _ = permissive.CheckURL(raw)
		u, err := strict.CheckURL(raw)
		if err != nil {
			if u != nil {
				t.Fatalf("CheckURL(%q) returned a URL with error %v", raw, err)
			}
			if err.Error() == "" {
				t.Fatalf("CheckURL(%q) returned an empty message", raw)
			}
			return
		}
		if u == nil {
			t.Fatalf("CheckURL(%q) returned neither URL nor error", raw)
		}
		if _, perr := permissive.CheckURL(raw); perr != nil {
			t.Fatalf("CheckURL(%q) accepted strictly but refused with AllowPrivate: %v", raw, perr)
		}
		if len(raw) > netguard.MaxURLLength {
			t.Fatalf("accepted a %d-byte URL", len(raw))
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("accepted scheme %q in %q", u.Scheme, raw)
		}
		if u.User != nil || strings.Contains(raw, "#") {
			t.Fatalf("accepted user info or fragment in %q", raw)
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				t.Fatalf("accepted port %q in %q", p, raw)
			}
		}
		host := u.Hostname()
		if host == "" {
			t.Fatalf("accepted %q without a host", raw)
		}
		for _, c := range []byte(host) {
			if c >= 0x80 || c <= ' ' {
				t.Fatalf("accepted host %q with byte %#x", host, c)
			}
		}
		lower := strings.ToLower(strings.TrimSuffix(host, "."))
		if lower == "localhost" || strings.HasSuffix(lower, ".localhost") {
			t.Fatalf("accepted loopback name in %q", raw)
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			if err := strict.CheckAddr(ip); err != nil {
				t.Fatalf("accepted forbidden literal in %q: %v", raw, err)
			}
		}
		if ip, ok := browserIPv4(host); ok {
			if ip.String() != host {
				t.Fatalf("accepted non-canonical IPv4 form %q (%s) in %q", host, ip, raw)
			}
			if err := strict.CheckAddr(ip); err != nil {
				t.Fatalf("accepted forbidden IPv4 form in %q: %v", raw, err)
			}
		}
	})
}

// browserIPv4 reads host the way browsers (WHATWG URL) and inet_aton do: one
// to four dot-separated numbers in decimal, octal (leading 0) or hex (0x),
// the last filling the remaining bytes, one trailing dot allowed. It is an
// oracle written independently of the package's own check.
func browserIPv4(host string) (netip.Addr, bool) {
	host = strings.TrimSuffix(host, ".")
	parts := strings.Split(host, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	nums := make([]uint64, len(parts))
	for i, p := range parts {
		base := 10
		switch {
		case len(p) >= 2 && (p[:2] == "0x" || p[:2] == "0X"):
			p, base = p[2:], 16
			if p == "" {
				p = "0"
			}
		case len(p) >= 2 && p[0] == '0':
			p, base = p[1:], 8
		}
		if p == "" {
			return netip.Addr{}, false
		}
		n, err := strconv.ParseUint(p, base, 64)
		if err != nil || n > 0xffffffff {
			return netip.Addr{}, false
		}
		nums[i] = n
	}
	var v uint64
	for i, n := range nums[:len(nums)-1] {
		if n > 0xff {
			return netip.Addr{}, false
		}
		v |= n << (8 * (3 - i))
	}
	last := nums[len(nums)-1]
	if last >= 1<<(8*(5-len(nums))) {
		return netip.Addr{}, false
	}
	v |= last
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

func TestBrowserIPv4Oracle(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]string{
		"2130706433":    "127.0.0.1",
		"0x7f.1":        "127.0.0.1",
		"0X7F000001":    "127.0.0.1",
		"0177.0.0.01":   "127.0.0.1",
		"127.1":         "127.0.0.1",
		"127.0.0.1.":    "127.0.0.1",
		"169.254.43518": "169.254.169.254",
		"0x":            "0.0.0.0",
		"93.184.216.34": "93.184.216.34",
	} {
		ip, ok := browserIPv4(host)
		require.True(t, ok, host)
		require.Equal(t, want, ip.String(), host)
	}
	for _, host := range []string{"agent.example.com", "1.2.3.4.5", "256.1.1.1", "1.2.3.256", "08", "0x1g", "", "1..2"} {
		_, ok := browserIPv4(host)
		require.False(t, ok, host)
	}
}

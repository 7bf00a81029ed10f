package netguard_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentplane/agentplane/internal/netguard"
)

func TestCheckAddr(t *testing.T) {
	t.Parallel()

	// reason "" means the address is public and allowed.
	cases := []struct {
		name   string
		ip     string
		reason string
	}{
		// IPv4 "this network" and unspecified.
		{"Unspecified4", "0.0.0.0", "unspecified"},
		{"ThisNetworkTop", "0.255.255.255", "unspecified"},
		{"AboveThisNetwork", "1.0.0.0", ""},
		// Loopback.
		{"BelowLoopback", "126.255.255.255", ""},
		{"Loopback", "127.0.0.1", "loopback"},
		{"LoopbackTop", "127.255.255.255", "loopback"},
		{"AboveLoopback", "128.0.0.0", ""},
		// 10/8.
		{"Below10", "9.255.255.255", ""},
		{"Private10", "10.0.0.0", "private"},
		{"Private10Top", "10.255.255.255", "private"},
		{"Above10", "11.0.0.0", ""},
		// 172.16/12.
		{"Below172", "172.15.255.255", ""},
		{"Private172", "172.16.0.0", "private"},
		{"Private172Top", "172.31.255.255", "private"},
		{"Above172", "172.32.0.0", ""},
		// 192.168/16.
		{"Below192", "192.167.255.255", ""},
		{"Private192", "192.168.0.0", "private"},
		{"Private192Top", "192.168.255.255", "private"},
		{"Above192", "192.169.0.0", ""},
		// CGNAT 100.64/10.
		{"BelowCGNAT", "100.63.255.255", ""},
		{"CGNAT", "100.64.0.0", "CGNAT"},
		{"CGNATTop", "100.127.255.255", "CGNAT"},
		{"AboveCGNAT", "100.128.0.0", ""},
		// Link-local and the metadata service.
		{"BelowLinkLocal", "169.253.255.255", ""},
		{"LinkLocal", "169.254.0.0", "link-local (cloud metadata)"},
		{"Metadata", "169.254.169.254", "link-local (cloud metadata)"},
		{"LinkLocalTop", "169.254.255.255", "link-local (cloud metadata)"},
		{"AboveLinkLocal", "169.255.0.0", ""},
		// Multicast, reserved, broadcast.
		{"BelowMulticast", "223.255.255.255", ""},
		{"Multicast", "224.0.0.0", "multicast"},
		{"MulticastTop", "239.255.255.255", "multicast"},
		{"Reserved", "240.0.0.0", "reserved"},
		{"ReservedTop", "255.255.255.254", "reserved"},
		{"Broadcast", "255.255.255.255", "broadcast"},
		// Public IPv4.
		{"Public4", "93.184.216.34", ""},
		{"PublicDNS", "8.8.8.8", ""},
		// IPv6.
		{"Unspecified6", "::", "unspecified"},
		{"Loopback6", "::1", "loopback"},
		{"UniqueLocalLow", "fc00::", "private"},
		{"UniqueLocalAWSMetadata", "fd00:ec2::254", "private"},
		{"UniqueLocalTop", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "private"},
		{"BelowUniqueLocal", "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ""},
		{"LinkLocal6", "fe80::1", "link-local"},
		{"LinkLocal6Zone", "fe80::1%eth0", "link-local"},
		{"LinkLocal6Top", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "link-local"},
		{"SiteLocal6", "fec0::1", "private"},
		{"Multicast6", "ff02::1", "multicast"},
		{"Multicast6Low", "ff00::", "multicast"},
		{"Public6", "2606:4700::1", ""},
		{"Public6DNS", "2001:4860:4860::8888", ""},
		// IPv4-mapped IPv6, judged by the embedded IPv4 address.
		{"MappedLoopback", "::ffff:127.0.0.1", "loopback"},
		{"MappedMetadata", "::ffff:169.254.169.254", "link-local (cloud metadata)"},
		{"MappedPrivate", "::ffff:10.1.2.3", "private"},
		{"MappedCGNAT", "::ffff:100.64.0.1", "CGNAT"},
		{"MappedUnspecified", "::ffff:0.0.0.0", "unspecified"},
		{"MappedHexLoopback", "::ffff:7f00:1", "loopback"},
		{"MappedPublic", "::ffff:93.184.216.34", ""},
		// NAT64, judged by the embedded IPv4 address.
		{"NAT64Metadata", "64:ff9b::a9fe:a9fe", "link-local (cloud metadata)"},
		{"NAT64Loopback", "64:ff9b::127.0.0.1", "loopback"},
		{"NAT64Private", "64:ff9b::c0a8:101", "private"},
		{"NAT64Public", "64:ff9b::5db8:d822", ""},
		{"LocalUseNAT64", "64:ff9b:1::a9fe:a9fe", "private"},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ip := netip.MustParseAddr(tc.ip)

			err := netguard.New(netguard.Options{}).CheckAddr(ip)
			if tc.reason == "" {
				require.NoError(t, err)
			} else {
				requireRefused(t, err, tc.reason+" address", ip.String())
			}

			require.NoError(t, netguard.New(netguard.Options{AllowPrivate: true}).CheckAddr(ip),
				"AllowPrivate allows every valid address")
		})
	}

	t.Run("InvalidAddrAlwaysRefused", func(t *testing.T) {
		t.Parallel()
		for _, allow := range []bool{false, true} {
			err := netguard.New(netguard.Options{AllowPrivate: allow}).CheckAddr(netip.Addr{})
			requireRefused(t, err, "invalid")
		}
	})

	t.Run("MessageNamesCategoryAndAddress", func(t *testing.T) {
		t.Parallel()
		err := netguard.New(netguard.Options{}).CheckAddr(netip.MustParseAddr("169.254.169.254"))
		require.EqualError(t, err, "netguard: refused link-local (cloud metadata) address 169.254.169.254")
	})

	t.Run("DoesNotCallOnRefuse", func(t *testing.T) {
		t.Parallel()
		var log refusalLog
		g := netguard.New(netguard.Options{OnRefuse: log.OnRefuse})
		require.Error(t, g.CheckAddr(netip.MustParseAddr("127.0.0.1")))
		require.Empty(t, log.Seen())
	})
}

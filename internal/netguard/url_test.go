package netguard_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentplane/agentplane/internal/netguard"
)

func TestCheckURL(t *testing.T) {
	t.Parallel()

	const nonStandard = "looks like an IPv4 address in a non-standard form"

	// Three kinds of case:
	//   want == ""            accepted with and without AllowPrivate;
	//   want != "", refused   refused by the address policy (wraps ErrRefused),
	//                         accepted with AllowPrivate;
	//   want != "", !refused  malformed: rejected in both modes, not ErrRefused.
	cases := []struct {
		name    string
		raw     string
		want    string
		refused bool
	}{
		// Accepted.
		{"HTTPSName", "https://agent.example.com/", "", false},
		{"HTTPPortPathQuery", "http://agent.example.com:8080/a2a/v1?x=1&y=2", "", false},
		{"UpperCase", "HTTPS://Agent.Example.COM/", "", false},
		{"NoPath", "https://agent.example.com", "", false},
		{"TrailingDotName", "https://agent.example.com./", "", false},
		{"SingleLabel", "http://agent:8080/", "", false},
		{"Underscore", "https://my_agent.example.com/", "", false},
		{"Punycode", "https://xn--bcher-kva.example/", "", false},
		{"NumericLabelsThenName", "https://1.2.3.4.example.com/", "", false},
		{"PublicIPv4", "https://93.184.216.34/", "", false},
		{"PublicIPv4Port", "http://93.184.216.34:65535/", "", false},
		{"PublicIPv6", "https://[2606:4700::1]:8443/", "", false},
		{"PublicMappedIPv6", "https://[::ffff:93.184.216.34]/", "", false},
		{"PublicNAT64", "https://[64:ff9b::5db8:d822]/", "", false},

		// Scheme and shape.
		{"Empty", "", "is required", false},
		{"FTP", "ftp://agent.example.com/", `scheme "ftp" is not allowed; use http or https`, false},
		{"JavaScript", "javascript:alert(1)", `scheme "javascript" is not allowed`, false},
		{"File", "file:///etc/passwd", `scheme "file" is not allowed`, false},
		{"Gopher", "gopher://agent.example.com/", `scheme "gopher" is not allowed`, false},
		{"Relative", "//agent.example.com/", "must be an absolute http or https URL", false},
		{"NoScheme", "agent.example.com", "must be an absolute http or https URL", false},
		{"MissingHostSlashes", "http:///path", "must include a host", false},
		{"Opaque", "http:agent.example.com", "must include a host", false},
		{"OnlyPort", "http://:8080/", "must include a host", false},
		{"Unparsable", "http://[::1/", "is not a valid URL", false},

		// User info.
		{"User", "https://user@agent.example.com/", "must not contain a user name or password", false},
		{"UserPassword", "https://user:secret@agent.example.com/", "must not contain a user name or password", false},
		{"EmptyUserInfo", "https://@agent.example.com/", "must not contain a user name or password", false},
		{"UserInfoHidingLoopback", "https://agent.example.com@127.0.0.1/", "must not contain a user name or password", false},

		// Fragment.
		{"Fragment", "https://agent.example.com/#top", "must not contain a fragment", false},
		{"EmptyFragment", "https://agent.example.com/#", "must not contain a fragment", false},

		// Port.
		{"PortZero", "https://agent.example.com:0/", "port must be a number from 1 to 65535", false},
		{"PortTooBig", "https://agent.example.com:65536/", "port must be a number from 1 to 65535", false},
		{"PortHuge", "https://agent.example.com:99999999999999999999/", "port must be a number from 1 to 65535", false},
		{"PortEmpty", "https://agent.example.com:/", "port must be a number from 1 to 65535", false},
		{"PortEmptyIPv6", "https://[2606:4700::1]:/", "port must be a number from 1 to 65535", false},
		{"PortName", "https://agent.example.com:https/", "is not a valid URL", false},

		// Characters and host syntax.
		{"Space", "https://agent example.com/", "must not contain spaces or control characters", false},
		{"LeadingSpace", " https://agent.example.com/", "must not contain spaces or control characters", false},
		{"Newline", "https://agent.example.com/\n", "must not contain spaces or control characters", false},
		{"Tab", "https://agent.exa\tmple.com/", "must not contain spaces or control characters", false},
		{"NonASCIIHost", "https://bücher.example/", "host must be ASCII", false},
		{"EscapedNonASCIIHost", "https://b%C3%BCcher.example/", "host must be ASCII", false},
		{"FullwidthLoopback", "http://１２７.０.０.１/", "host must be ASCII", false},
		{"AngleBrackets", "https://a<b>.example/", "is not a valid host name", false},
		{"SubDelims", "https://a!$&'()*+,;=b/", "is not a valid host name", false},
		{"LeadingHyphen", "https://-agent.example.com/", "is not a valid host name", false},
		{"TrailingHyphen", "https://agent-.example.com/", "is not a valid host name", false},
		{"EmptyLabel", "https://agent..example.com/", "is not a valid host name", false},
		{"LeadingDot", "https://.example.com/", "is not a valid host name", false},
		{"LabelTooLong", "https://" + strings.Repeat("a", 64) + ".example.com/", "is not a valid host name", false},
		{"NameTooLong", "https://" + strings.Repeat("abcdefghi.", 26) + "com/", "is not a valid host name", false},
		{"BadIPv6", "https://[agent]/", "is not a valid URL", false},
		{"IPv4InBrackets", "https://[93.184.216.34]/", "is not a valid URL", false},
		{"IPv6Zone", "http://[fe80::1%25eth0]/", "must not contain an IPv6 zone", false},
		{"TooLong", "https://agent.example.com/" + strings.Repeat("a", netguard.MaxURLLength), "is too long", false},

		// Numeric hosts that browsers or C resolvers read as IPv4 but
		// net/netip does not: always refused.
		{"Decimal", "http://2130706433/", nonStandard, false},
		{"Hex", "http://0x7f000001/", nonStandard, false},
		{"HexDotted", "http://0x7f.1/", nonStandard, false},
		{"HexUpper", "http://0X7F.0.0.1/", nonStandard, false},
		{"HexPrefixOnly", "http://127.0.0.0x/", nonStandard, false},
		{"Octal", "http://017700000001/", nonStandard, false},
		{"OctalDotted", "http://0177.0.0.1/", nonStandard, false},
		{"ShortForm", "http://127.1/", nonStandard, false},
		{"Zero", "http://0/", nonStandard, false},
		{"TrailingDotIPv4", "http://127.0.0.1./", nonStandard, false},
		{"TrailingDotPublicIPv4", "http://93.184.216.34./", nonStandard, false},
		{"FiveParts", "http://1.2.3.4.5/", nonStandard, false},
		{"OctetTooBig", "http://1.2.3.256/", nonStandard, false},
		{"PublicDecimal", "http://1572395042/", nonStandard, false},
		{"NumericTLD", "http://agent.example.123/", nonStandard, false},
		{"HexLastLabel", "http://agent.example.0xff/", nonStandard, false},

		// Forbidden IP literals: refused by policy.
		{"Loopback", "http://127.0.0.1:8080/", `host "127.0.0.1" is not allowed (loopback address)`, true},
		{"LoopbackOther", "http://127.9.9.9/", "(loopback address)", true},
		{"Private10", "http://10.0.0.1/", "(private address)", true},
		{"Private172", "http://172.16.0.1/", "(private address)", true},
		{"Private192", "http://192.168.1.1/", "(private address)", true},
		{"Metadata", "http://169.254.169.254/latest/meta-data/", "(link-local (cloud metadata) address)", true},
		{"CGNAT", "http://100.64.0.1/", "(CGNAT address)", true},
		{"Unspecified", "http://0.0.0.0:8080/", "(unspecified address)", true},
		{"Multicast", "http://224.0.0.1/", "(multicast address)", true},
		{"Broadcast", "http://255.255.255.255/", "(broadcast address)", true},
		{"Reserved", "http://240.0.0.1/", "(reserved address)", true},
		{"Loopback6", "http://[::1]:8080/", `host "::1" is not allowed (loopback address)`, true},
		{"Unspecified6", "http://[::]/", "(unspecified address)", true},
		{"UniqueLocal6", "http://[fd00:ec2::254]/", "(private address)", true},
		{"LinkLocal6", "http://[fe80::1]/", "(link-local address)", true},
		{"Multicast6", "http://[ff02::1]/", "(multicast address)", true},
		{"MappedLoopback", "http://[::ffff:127.0.0.1]/", "(loopback address)", true},
		{"MappedLoopbackHex", "http://[::ffff:7f00:1]/", "(loopback address)", true},
		{"MappedLoopbackLong", "http://[0:0:0:0:0:ffff:127.0.0.1]/", "(loopback address)", true},
		{"MappedMetadata", "http://[::ffff:a9fe:a9fe]/", "(link-local (cloud metadata) address)", true},
		{"NAT64Metadata", "http://[64:ff9b::a9fe:a9fe]/", "(link-local (cloud metadata) address)", true},
		{"NAT64Loopback", "http://[64:ff9b::127.0.0.1]/", "(loopback address)", true},

		// Loopback names.
		{"Localhost", "http://localhost:8080/", `host "localhost" is a loopback name`, true},
		{"LocalhostUpper", "http://LOCALHOST/", "is a loopback name", true},
		{"LocalhostDot", "http://localhost./", "is a loopback name", true},
		{"SubLocalhost", "http://agent.localhost/", "is a loopback name", true},
		{"SubLocalhostMixed", "http://Agent.LocalHost./", "is a loopback name", true},
	}

	strict := netguard.New(netguard.Options{})
	permissive := netguard.New(netguard.Options{AllowPrivate: true})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u, err := strict.CheckURL(tc.raw)
			pu, perr := permissive.CheckURL(tc.raw)
			switch {
			case tc.want == "":
				require.NoError(t, err)
				require.NoError(t, perr)
				require.Contains(t, []string{"http", "https"}, u.Scheme)
				require.NotEmpty(t, u.Hostname())
				require.Equal(t, u, pu)
			case tc.refused:
				requireRefused(t, err, tc.want, "--allow-private-agents")
				require.Nil(t, u)
				require.NoError(t, perr, "AllowPrivate accepts it")
				require.NotNil(t, pu)
			default:
				require.Error(t, err)
				require.NotErrorIs(t, err, netguard.ErrRefused)
				require.Contains(t, err.Error(), tc.want)
				require.Nil(t, u)
				require.Error(t, perr, "AllowPrivate does not relax URL syntax")
				require.Equal(t, err.Error(), perr.Error())
			}
		})
	}

	t.Run("ReturnsParsedURL", func(t *testing.T) {
		t.Parallel()
		u, err := strict.CheckURL("https://agent.example.com:8443/a2a?v=1")
		require.NoError(t, err)
		require.Equal(t, "https", u.Scheme)
		require.Equal(t, "agent.example.com", u.Hostname())
		require.Equal(t, "8443", u.Port())
		require.Equal(t, "/a2a", u.Path)
		require.Equal(t, "v=1", u.RawQuery)
	})

	t.Run("Messages", func(t *testing.T) {
		t.Parallel()
		// Messages follow the field name: the API answers "url: <message>".
		for raw, want := range map[string]string{
			"":                         "is required",
			"ftp://agent.example/":     `scheme "ftp" is not allowed; use http or https`,
			"https://u@agent.example/": "must not contain a user name or password",
			"https://agent.example/#x": "must not contain a fragment (#…)",
			"https://agent.example:0/": "port must be a number from 1 to 65535",
			"http://0x7f.1/":           `host "0x7f.1" looks like an IPv4 address in a non-standard form; write it as four decimal numbers, as in 203.0.113.7`,
			"http://169.254.169.254/": `host "169.254.169.254" is not allowed (link-local (cloud metadata) address); ` +
				"agent URLs must point to public addresses unless the server runs with --allow-private-agents",
			"http://localhost/": `host "localhost" is a loopback name; ` +
				"agent URLs must point to public addresses unless the server runs with --allow-private-agents",
			"https://agent.example/" + strings.Repeat("x", 2100): "is too long (2122 bytes; the limit is 2048)",
		} {
			_, err := strict.CheckURL(raw)
			require.EqualError(t, err, want, "for %q", raw)
		}
	})

	t.Run("LengthLimitIsInclusive", func(t *testing.T) {
		t.Parallel()
		base := "https://agent.example.com/"
		exact := base + strings.Repeat("a", netguard.MaxURLLength-len(base))
		_, err := strict.CheckURL(exact)
		require.NoError(t, err)
		_, err = strict.CheckURL(exact + "a")
		require.ErrorContains(t, err, "is too long")
	})

	t.Run("LongHostQuotedShort", func(t *testing.T) {
		t.Parallel()
		_, err := strict.CheckURL("https://" + strings.Repeat("a", 300) + "!/")
		require.ErrorContains(t, err, "is not a valid host name")
		require.Less(t, len(err.Error()), 150, "the message quotes a shortened host")
	})

	t.Run("OnRefuse", func(t *testing.T) {
		t.Parallel()
		var log refusalLog
		g := netguard.New(netguard.Options{OnRefuse: log.OnRefuse})
		for _, raw := range []string{
			"http://169.254.169.254/",
			"http://[::ffff:127.0.0.1]/",
			"http://Localhost/",
			"https://agent.example.com/", // allowed: no call
			"ftp://10.0.0.1/",            // malformed: no call
			"http://0x7f.1/",             // malformed: no call
		} {
			_, _ = g.CheckURL(raw)
		}
		require.Equal(t, []refusal{
			{Host: "169.254.169.254", IP: "169.254.169.254", Reason: "link-local (cloud metadata)"},
			{Host: "::ffff:127.0.0.1", IP: "::ffff:127.0.0.1", Reason: "loopback"},
			{Host: "Localhost", IP: "", Reason: "loopback name"},
		}, log.Seen())
	})
}

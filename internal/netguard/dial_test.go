package netguard_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentplane/agentplane/internal/netguard"
)

func TestDialContext(t *testing.T) {
	t.Parallel()

	t.Run("RefusedAddressesNeverDialed", func(t *testing.T) {
		t.Parallel()
		dial := newRecordingDial(t)
		var log refusalLog
		g := netguard.New(netguard.Options{
			Resolver: staticResolver("10.0.0.1", "169.254.169.254", "127.0.0.1", "::1", "::ffff:192.168.0.1", "64:ff9b::a9fe:a9fe"),
			Dial:     dial.Dial,
			OnRefuse: log.OnRefuse,
		})
		conn, err := g.DialContext(context.Background(), "tcp", "evil.example:443")
		require.Nil(t, conn)
		requireRefused(t, err, `"evil.example"`, "every address is forbidden",
			"10.0.0.1: private", "169.254.169.254: link-local (cloud metadata)", "127.0.0.1: loopback",
			"::1: loopback", "::ffff:192.168.0.1: private", "64:ff9b::a9fe:a9fe: link-local (cloud metadata)")
		require.Empty(t, dial.Addrs(), "no refused address reaches Dial")
		require.Len(t, log.Seen(), 6)
	})

	t.Run("MixedAnswerDialsOnlyAllowed", func(t *testing.T) {
		t.Parallel()
		dial := newRecordingDial(t)
		var log refusalLog
		g := netguard.New(netguard.Options{
			Resolver: staticResolver("10.0.0.5", "93.184.216.34", "192.168.1.1"),
			Dial:     dial.Dial,
			OnRefuse: log.OnRefuse,
		})
		conn, err := g.DialContext(context.Background(), "tcp", "agent.example.com:443")
		require.NoError(t, err)
		require.NotNil(t, conn)
		require.Equal(t, []string{"tcp 93.184.216.34:443"}, dial.Addrs())
		require.Equal(t, []refusal{
			{Host: "agent.example.com", IP: "10.0.0.5", Reason: "private"},
			{Host: "agent.example.com", IP: "192.168.1.1", Reason: "private"},
		}, log.Seen())
	})

	t.Run("TriesAllowedInOrderUntilOneConnects", func(t *testing.T) {
		t.Parallel()
		dial := newRecordingDial(t)
		dial.fail["[2606:4700::1]:443"] = syscall.ECONNREFUSED
		dial.fail["93.184.216.34:443"] = syscall.EHOSTUNREACH
		g := netguard.New(netguard.Options{
			Resolver: staticResolver("2606:4700::1", "127.0.0.1", "93.184.216.34", "93.184.216.35", "93.184.216.36"),
			Dial:     dial.Dial,
		})
		conn, err := g.DialContext(context.Background(), "tcp", "agent.example.com:443")
		require.NoError(t, err)
		require.NotNil(t, conn)
		require.Equal(t, []string{
			"tcp [2606:4700::1]:443",
			"tcp 93.184.216.34:443",
			"tcp 93.184.216.35:443",
		}, dial.Addrs(), "stops at the first success and skips the refused address")
	})

	t.Run("AllAllowedFailReturnsFirstConnectError", func(t *testing.T) {
		t.Parallel()
		dial := newRecordingDial(t)
		dial.fail["93.184.216.34:80"] = syscall.ECONNREFUSED
		dial.fail["93.184.216.35:80"] = syscall.ETIMEDOUT
		g := netguard.New(netguard.Options{
			Resolver: staticResolver("93.184.216.34", "10.0.0.1", "93.184.216.35"),
			Dial:     dial.Dial,
		})
		_, err := g.DialContext(context.Background(), "tcp", "agent.example.com:80")
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
		require.NotErrorIs(t, err, netguard.ErrRefused, "a failed connect is not a policy refusal")
		require.ErrorContains(t, err, `connect to "agent.example.com"`)
		require.Len(t, dial.Addrs(), 2)
	})

	t.Run("DuplicatesDialedOnce", func(t *testing.T) {
		t.Parallel()
		dial := newRecordingDial(t)
		dial.fail["93.184.216.34:80"] = syscall.ECONNREFUSED
		g := netguard.New(netguard.Options{
			Resolver: staticResolver("93.184.216.34", "::ffff:93.184.216.34", "93.184.216.34"),
			Dial:     dial.Dial,
		})
		_, err := g.DialContext(context.Background(), "tcp", "agent.example.com:80")
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
		require.Equal(t, []string{"tcp 93.184.216.34:80"}, dial.Addrs())
	})

	t.Run("MappedAddressDialedAsIPv4", func(t *testing.T) {
		t.Parallel()
		dial := newRecordingDial(t)
		g := netguard.New(netguard.Options{Resolver: staticResolver("::ffff:93.184.216.34"), Dial: dial.Dial})
		_, err := g.DialContext(context.Background(), "tcp4", "agent.example.com:80")
		require.NoError(t, err)
		require.Equal(t, []string{"tcp4 93.184.216.34:80"}, dial.Addrs())
	})

	t.Run("DNSRebinding", func(t *testing.T) {
		t.Parallel()
		// The attacker's name answers with a public address first and with
		// the metadata address on every later lookup.
		res := &fakeResolver{answer: func(call int, _, _ string) ([]netip.Addr, error) {
			if call == 1 {
				return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
			}
			return []netip.Addr{netip.MustParseAddr("169.254.169.254")}, nil
		}}
		dial := newRecordingDial(t)
		var log refusalLog
		g := netguard.New(netguard.Options{Resolver: res, Dial: dial.Dial, OnRefuse: log.OnRefuse})

		conn, err := g.DialContext(context.Background(), "tcp", "rebind.example:80")
		require.NoError(t, err)
		require.NotNil(t, conn)
		require.Equal(t, []string{"ip rebind.example"}, res.Calls(), "resolved exactly once")
		require.Equal(t, []string{"tcp 93.184.216.34:80"}, dial.Addrs(), "connected to the checked IP, by IP")

		// The next connection resolves again, sees the metadata address and
		// is refused before any connect.
		_, err = g.DialContext(context.Background(), "tcp", "rebind.example:80")
		requireRefused(t, err, `"rebind.example"`, "169.254.169.254: link-local (cloud metadata)")
		require.Len(t, res.Calls(), 2)
		require.Equal(t, []string{"tcp 93.184.216.34:80"}, dial.Addrs(), "no new dial")
		require.Equal(t, []refusal{{Host: "rebind.example", IP: "169.254.169.254", Reason: "link-local (cloud metadata)"}}, log.Seen())
	})

	t.Run("IPLiteralNotResolved", func(t *testing.T) {
		t.Parallel()
		dial := newRecordingDial(t)
		var log refusalLog
		g := netguard.New(netguard.Options{Resolver: failingResolver(t), Dial: dial.Dial, OnRefuse: log.OnRefuse})

		_, err := g.DialContext(context.Background(), "tcp", "169.254.169.254:80")
		requireRefused(t, err, "link-local (cloud metadata)")
		_, err = g.DialContext(context.Background(), "tcp", "[::ffff:127.0.0.1]:80")
		requireRefused(t, err, "loopback")
		_, err = g.DialContext(context.Background(), "tcp", "[fe80::1%eth0]:80")
		requireRefused(t, err, "link-local")
		require.Empty(t, dial.Addrs())
		require.Len(t, log.Seen(), 3)

		conn, err := g.DialContext(context.Background(), "tcp", "[2606:4700::1]:443")
		require.NoError(t, err)
		require.NotNil(t, conn)
		require.Equal(t, []string{"tcp [2606:4700::1]:443"}, dial.Addrs())
	})

	t.Run("AllowPrivateDialsPrivate", func(t *testing.T) {
		t.Parallel()
		dial := newRecordingDial(t)
		var log refusalLog
		g := netguard.New(netguard.Options{
			AllowPrivate: true,
			Resolver:     staticResolver("10.0.0.7"),
			Dial:         dial.Dial,
			OnRefuse:     log.OnRefuse,
		})
		_, err := g.DialContext(context.Background(), "tcp", "agent.internal:8080")
		require.NoError(t, err)
		_, err = g.DialContext(context.Background(), "tcp", "[fe80::1%eth0]:8080")
		require.NoError(t, err)
		require.Equal(t, []string{"tcp 10.0.0.7:8080", "tcp [fe80::1%eth0]:8080"}, dial.Addrs())
		require.Empty(t, log.Seen())
	})

	t.Run("ResolverErrorPropagated", func(t *testing.T) {
		t.Parallel()
		dnsErr := &net.DNSError{Err: "no such host", Name: "missing.example", IsNotFound: true}
		res := &fakeResolver{answer: func(int, string, string) ([]netip.Addr, error) { return nil, dnsErr }}
		dial := newRecordingDial(t)
		g := netguard.New(netguard.Options{Resolver: res, Dial: dial.Dial})
		_, err := g.DialContext(context.Background(), "tcp", "missing.example:443")
		var got *net.DNSError
		require.ErrorAs(t, err, &got)
		require.True(t, got.IsNotFound)
		require.NotErrorIs(t, err, netguard.ErrRefused)
		require.Empty(t, dial.Addrs())
	})

	t.Run("EmptyAnswer", func(t *testing.T) {
		t.Parallel()
		dial := newRecordingDial(t)
		g := netguard.New(netguard.Options{Resolver: staticResolver(), Dial: dial.Dial})
		_, err := g.DialContext(context.Background(), "tcp", "empty.example:443")
		require.ErrorContains(t, err, "no addresses")
		require.NotErrorIs(t, err, netguard.ErrRefused)
		require.Empty(t, dial.Addrs())
	})

	t.Run("InvalidAnswerRefused", func(t *testing.T) {
		t.Parallel()
		dial := newRecordingDial(t)
		res := &fakeResolver{answer: func(int, string, string) ([]netip.Addr, error) { return []netip.Addr{{}}, nil }}
		g := netguard.New(netguard.Options{AllowPrivate: true, Resolver: res, Dial: dial.Dial})
		_, err := g.DialContext(context.Background(), "tcp", "odd.example:443")
		requireRefused(t, err, "invalid")
		require.Empty(t, dial.Addrs())
	})

	t.Run("NetworkFamily", func(t *testing.T) {
		t.Parallel()
		dial := newRecordingDial(t)
		res := staticResolver("2606:4700::1", "93.184.216.34")
		g := netguard.New(netguard.Options{Resolver: res, Dial: dial.Dial})
		_, err := g.DialContext(context.Background(), "tcp4", "agent.example.com:80")
		require.NoError(t, err)
		_, err = g.DialContext(context.Background(), "tcp6", "agent.example.com:80")
		require.NoError(t, err)
		require.Equal(t, []string{"ip4 agent.example.com", "ip6 agent.example.com"}, res.Calls())
		require.Equal(t, []string{"tcp4 93.184.216.34:80", "tcp6 [2606:4700::1]:80"}, dial.Addrs())

		_, err = g.DialContext(context.Background(), "tcp6", "93.184.216.34:80")
		require.ErrorContains(t, err, "no tcp6 address")
		require.Len(t, dial.Addrs(), 2)
	})

	t.Run("BadInput", func(t *testing.T) {
		t.Parallel()
		dial := newRecordingDial(t)
		g := netguard.New(netguard.Options{AllowPrivate: true, Resolver: failingResolver(t), Dial: dial.Dial})
		for _, in := range []struct{ network, addr, want string }{
			{"unix", "/var/run/docker.sock", "only tcp, tcp4 and tcp6"},
			{"udp", "93.184.216.34:53", "only tcp, tcp4 and tcp6"},
			{"ip4:icmp", "93.184.216.34", "only tcp, tcp4 and tcp6"},
			{"tcp", "agent.example.com", "missing port"},
			{"tcp", ":8080", "missing host"},
			{"tcp", "agent.example.com:0", "port must be a number"},
			{"tcp", "agent.example.com:65536", "port must be a number"},
			{"tcp", "agent.example.com:http", "port must be a number"},
		} {
			_, err := g.DialContext(context.Background(), in.network, in.addr)
			require.ErrorContains(t, err, in.want, "%s %s", in.network, in.addr)
		}
		require.Empty(t, dial.Addrs())
	})

	t.Run("CanceledBeforeDial", func(t *testing.T) {
		t.Parallel()
		dial := newRecordingDial(t)
		g := netguard.New(netguard.Options{Resolver: failingResolver(t), Dial: dial.Dial})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := g.DialContext(ctx, "tcp", "agent.example.com:443")
		require.ErrorIs(t, err, context.Canceled)
		require.Empty(t, dial.Addrs())
	})

	t.Run("CanceledDuringLookup", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		// A resolver that ignores the context but is slow enough for the
		// cancel to land: the guard must still not dial.
		res := &fakeResolver{answer: func(int, string, string) ([]netip.Addr, error) {
			cancel()
			return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
		}}
		dial := newRecordingDial(t)
		g := netguard.New(netguard.Options{Resolver: res, Dial: dial.Dial})
		_, err := g.DialContext(ctx, "tcp", "agent.example.com:443")
		require.ErrorIs(t, err, context.Canceled)
		require.Empty(t, dial.Addrs())
	})

	t.Run("CanceledDuringDialStopsTrying", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		var dialed []string
		blocking := func(ctx context.Context, _, addr string) (net.Conn, error) {
			dialed = append(dialed, addr)
			cancel()
			<-ctx.Done()
			return nil, ctx.Err()
		}
		g := netguard.New(netguard.Options{Resolver: staticResolver("93.184.216.34", "93.184.216.35"), Dial: blocking})
		_, err := g.DialContext(ctx, "tcp", "agent.example.com:443")
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, []string{"93.184.216.34:443"}, dialed, "no further attempt after cancel")
	})

	t.Run("DeadlineSharedAmongAddresses", func(t *testing.T) {
		t.Parallel()
		// Each attempt gets its share of the deadline (at least 2 s, or what
		// remains), so a first address that black-holes cannot use up the
		// whole budget when there is time for the next.
		var budgets []time.Duration
		hang := func(ctx context.Context, _, addr string) (net.Conn, error) {
			deadline, ok := ctx.Deadline()
			require.True(t, ok)
			budgets = append(budgets, time.Until(deadline))
			if addr == "93.184.216.35:443" {
				c, _ := net.Pipe()
				t.Cleanup(func() { _ = c.Close() })
				return c, nil
			}
			return nil, errors.New("black hole")
		}
		g := netguard.New(netguard.Options{Resolver: staticResolver("93.184.216.34", "93.184.216.35"), Dial: hang})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		conn, err := g.DialContext(ctx, "tcp", "agent.example.com:443")
		require.NoError(t, err)
		require.NotNil(t, conn)
		require.Len(t, budgets, 2)
		require.InDelta(t, 10*time.Second, budgets[0], float64(time.Second), "half the time for the first of two")
		require.Greater(t, budgets[1], 18*time.Second, "the last address gets all that remains")
	})

	t.Run("ConcurrentUse", func(t *testing.T) {
		t.Parallel()
		dial := newRecordingDial(t)
		var log refusalLog
		res := &fakeResolver{answer: func(call int, _, _ string) ([]netip.Addr, error) {
			if call%2 == 0 {
				return []netip.Addr{netip.MustParseAddr("10.0.0.1")}, nil
			}
			return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
		}}
		g := netguard.New(netguard.Options{Resolver: res, Dial: dial.Dial, OnRefuse: log.OnRefuse})
		const n = 32
		errs := make(chan error, n)
		for range n {
			go func() {
				_, err := g.DialContext(context.Background(), "tcp", "flip.example:443")
				errs <- err
			}()
		}
		refused := 0
		for range n {
			if err := <-errs; err != nil {
				require.ErrorIs(t, err, netguard.ErrRefused)
				refused++
			}
		}
		require.Equal(t, n/2, refused)
		require.Len(t, log.Seen(), n/2)
		require.Len(t, dial.Addrs(), n/2)
		for _, a := range dial.Addrs() {
			require.Equal(t, "tcp 93.184.216.34:443", a)
		}
	})
}

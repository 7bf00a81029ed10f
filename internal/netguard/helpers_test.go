package netguard_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentplane/agentplane/internal/netguard"
)

// fakeResolver answers lookups from a function of the call number (starting
// at 1) and records every call. It never touches DNS.
type fakeResolver struct {
	answer func(call int, network, host string) ([]netip.Addr, error)

	mu    sync.Mutex
	calls []string // "network host"
}

func (r *fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	r.calls = append(r.calls, network+" "+host)
	n := len(r.calls)
	r.mu.Unlock()
	return r.answer(n, network, host)
}

func (r *fakeResolver) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// staticResolver answers every lookup with ips.
func staticResolver(ips ...string) *fakeResolver {
	addrs := make([]netip.Addr, len(ips))
	for i, s := range ips {
		addrs[i] = netip.MustParseAddr(s)
	}
	return &fakeResolver{answer: func(int, string, string) ([]netip.Addr, error) { return addrs, nil }}
}

// failingResolver fails the test if it is ever called.
func failingResolver(t *testing.T) *fakeResolver {
	t.Helper()
	return &fakeResolver{answer: func(_ int, _, host string) ([]netip.Addr, error) {
		t.Errorf("resolver called for %q; no lookup was expected", host)
		return nil, errors.New("unexpected lookup")
	}}
}

// recordingDial is a DialFunc that never opens a socket: it records each
// address it is asked for and answers with one end of a net.Pipe, or with
// fail[addr] if set.
type recordingDial struct {
	t    *testing.T
	fail map[string]error

	mu    sync.Mutex
	addrs []string
}

func newRecordingDial(t *testing.T) *recordingDial {
	t.Helper()
	return &recordingDial{t: t, fail: map[string]error{}}
}

func (d *recordingDial) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.addrs = append(d.addrs, network+" "+addr)
	d.mu.Unlock()
	if _, err := netip.ParseAddrPort(addr); err != nil {
		d.t.Errorf("Dial got %q, which is not an IP literal with a port", addr)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := d.fail[addr]; err != nil {
		return nil, err
	}
	client, server := net.Pipe()
	d.t.Cleanup(func() {
		_ = client.Close()
		_ = server.Close()
	})
	return client, nil
}

func (d *recordingDial) Addrs() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.addrs...)
}

// refusal is one OnRefuse call.
type refusal struct {
	Host   string
	IP     string
	Reason string
}

// refusalLog collects OnRefuse calls.
type refusalLog struct {
	mu   sync.Mutex
	seen []refusal
}

func (l *refusalLog) OnRefuse(host string, ip netip.Addr, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := ""
	if ip.IsValid() {
		s = ip.String()
	}
	l.seen = append(l.seen, refusal{Host: host, IP: s, Reason: reason})
}

func (l *refusalLog) Seen() []refusal {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]refusal(nil), l.seen...)
}

var loopbackNet = netip.MustParsePrefix("127.0.0.0/8")

// loopbackOnlyDial is a real dialer that refuses, and fails the test for, any
// address outside 127.0.0.0/8, so a bug in the guard can never reach the
// network.
func loopbackOnlyDial(t *testing.T) func(context.Context, string, string) (net.Conn, error) {
	t.Helper()
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil || !loopbackNet.Contains(ap.Addr().Unmap()) {
			t.Errorf("test dial to %q outside 127.0.0.0/8 blocked", addr)
			return nil, errors.New("test: dial outside 127.0.0.0/8 blocked")
		}
		return d.DialContext(ctx, network, addr)
	}
}

// requireRefused asserts that err is a policy refusal whose message contains
// every fragment.
func requireRefused(t *testing.T, err error, fragments ...string) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, netguard.ErrRefused)
	for _, f := range fragments {
		require.Contains(t, err.Error(), f)
	}
}

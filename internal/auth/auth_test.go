package auth

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/clock"
	"github.com/agentplane/agentplane/internal/fault"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/store/sqlitestore"
	"github.com/stretchr/testify/require"
)

func TestNewToken(t *testing.T) {
	t.Parallel()
	plain, hash, display := NewToken(WorkspacePrefix)
	require.True(t, strings.HasPrefix(plain, "apw_"))
	require.Len(t, plain, 47)
	require.Equal(t, plain[:12], display)
	require.Equal(t, HashToken(plain), hash)
	other, _, _ := NewToken(WorkspacePrefix)
	require.NotEqual(t, plain, other)
	require.True(t, plausible(plain))
	require.False(t, plausible("short"))
	require.False(t, plausible("has space in the middle of it"))
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	c := clock.NewFake(time.Unix(0, 0))
	l := NewLimiter(c, 20, time.Minute)
	for i := 0; i < 20; i++ {
		l.Fail("1.2.3.4")
		c.Advance(time.Second)
	}
	blocked, _ := l.Blocked("1.2.3.4")
	require.False(t, blocked, "20 failures are allowed")
	l.Fail("1.2.3.4")
	blocked, wait := l.Blocked("1.2.3.4")
	require.True(t, blocked, "the 21st within a minute blocks")
	require.Equal(t, 40*time.Second, wait, "until the oldest counted failure leaves the window")
	blocked, _ = l.Blocked("5.6.7.8")
	require.False(t, blocked, "per client")
	c.Advance(wait)
	blocked, _ = l.Blocked("1.2.3.4")
	require.False(t, blocked)
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	ips := NewClientIP([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	req := func(remote, xff, proto string) *http.Request {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		if proto != "" {
			r.Header.Set("X-Forwarded-Proto", proto)
		}
		return r
	}
	require.Equal(t, "203.0.113.9", ips.Of(req("203.0.113.9:5000", "1.1.1.1", "")), "untrusted peer: header ignored")
	require.Equal(t, "198.51.100.7", ips.Of(req("10.0.0.5:5000", "1.1.1.1, 198.51.100.7", "")), "rightmost untrusted hop")
	require.Equal(t, "198.51.100.7", ips.Of(req("10.0.0.5:5000", "198.51.100.7, 10.0.0.9", "")), "skips trusted hops")
	require.Equal(t, "10.0.0.5", ips.Of(req("10.0.0.5:5000", "", "")))
	require.Equal(t, "10.0.0.9", ips.Of(req("10.0.0.5:5000", "garbage, 10.0.0.9", "")), "a malformed hop stops the walk")
	require.True(t, ips.TLS(req("10.0.0.5:5000", "", "https")))
	require.False(t, ips.TLS(req("203.0.113.9:5000", "", "https")), "only a trusted proxy may say https")
}

type testBundle struct {
	ctx   context.Context
	clock *clock.Fake
	store *sqlitestore.Store
	svc   *Service
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	ctx := context.Background()
	c := clock.NewFake(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	st, err := sqlitestore.Open(ctx, t.TempDir(), store.Options{Now: c.Now})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	require.NoError(t, st.Migrate(ctx))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return &testBundle{ctx: ctx, clock: c, store: st, svc: NewService(Options{Store: st, Clock: c, Log: log})}
}

func TestBootstrapOnceAcrossReplicas(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var (
		mu      sync.Mutex
		printed []string
		wg      sync.WaitGroup
	)
	for i := 0; i < 4; i++ {
		svc := NewService(Options{Store: b.store, Clock: b.clock, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := svc.EnsureAdminTokens(b.ctx, "")
			require.NoError(t, err)
			if tok != "" {
				mu.Lock()
				printed = append(printed, tok)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Len(t, printed, 1, "exactly one replica creates and prints the bootstrap token")
	again, err := b.svc.EnsureAdminTokens(b.ctx, "")
	require.NoError(t, err)
	require.Empty(t, again, "never printed twice")

	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+printed[0])
	p, err := b.svc.Authenticate(r)
	require.NoError(t, err)
	require.Equal(t, "admin:bootstrap", p.Actor())
}

func TestAdminTokenFlagAndRevocation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.svc.EnsureAdminTokens(b.ctx, "operator-chosen-secret-value")
	require.NoError(t, err)
	_, err = b.svc.EnsureAdminTokens(b.ctx, "operator-chosen-secret-value")
	require.NoError(t, err, "idempotent")
	admins, err := b.store.ListTokens(b.ctx, store.TokenFilter{Kind: store.TokenAdmin})
	require.NoError(t, err)
	require.Len(t, admins, 1)
	require.Equal(t, "(--admin-token)", admins[0].Prefix, "no part of the flag value is stored or shown")

	err = b.svc.RevokeAdminToken(b.ctx, admins[0].ID)
	f, ok := fault.As(err)
	require.True(t, ok)
	require.Equal(t, "last_admin_token", f.Code)

	plain, tok, err := b.svc.MintAdminToken(b.ctx, "ci", "admin:test")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(plain, "apa_"))
	_, _, err = b.svc.MintAdminToken(b.ctx, "ci", "admin:test")
	f, _ = fault.As(err)
	require.Equal(t, "duplicate_name", f.Code)
	require.NoError(t, b.svc.RevokeAdminToken(b.ctx, tok.ID))
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+plain)
	_, err = b.svc.Authenticate(r)
	f, _ = fault.As(err)
	require.Equal(t, fault.KindUnauthorized, f.Kind, "revoked")
}

func TestSessions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.svc.EnsureAdminTokens(b.ctx, "operator-chosen-secret-value")
	require.NoError(t, err)
	login := httptest.NewRequest("POST", "/auth/login", nil)
	value, expires, err := b.svc.Login(b.ctx, login, "operator-chosen-secret-value")
	require.NoError(t, err)
	require.Equal(t, b.clock.Now().Add(SessionTTL), expires)
	ck := b.svc.SessionCookieFor(login, value, expires)
	require.True(t, ck.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, ck.SameSite)
	require.False(t, ck.Secure, "plain HTTP")

	withCookie := func(method, origin string) *http.Request {
		r := httptest.NewRequest(method, "http://agentplane.local/workspaces", nil)
		r.AddCookie(&http.Cookie{Name: SessionCookie, Value: value})
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		return r
	}
	p, err := b.svc.Authenticate(withCookie("GET", ""))
	require.NoError(t, err)
	require.True(t, p.ViaSession)
	_, err = b.svc.Authenticate(withCookie("POST", "http://agentplane.local"))
	require.NoError(t, err, "same origin write")
	_, err = b.svc.Authenticate(withCookie("POST", "https://evil.example"))
	f, _ := fault.As(err)
	require.Equal(t, fault.KindForbidden, f.Kind)
	up := withCookie("GET", "")
	up.Header.Set("Upgrade", "websocket")
	_, err = b.svc.Authenticate(up)
	require.Error(t, err, "a cookie WebSocket upgrade needs an Origin")

	// Sliding expiry: used after 11 h, it lives 12 h from then.
	b.clock.Advance(11 * time.Hour)
	_, err = b.svc.Authenticate(withCookie("GET", ""))
	require.NoError(t, err)
	b.clock.Advance(11 * time.Hour)
	_, err = b.svc.Authenticate(withCookie("GET", ""))
	require.NoError(t, err, "still valid 22 h after login thanks to the slide")
	b.clock.Advance(12*time.Hour + time.Second)
	_, err = b.svc.Authenticate(withCookie("GET", ""))
	require.Error(t, err, "expired after 12 h idle")

	_, _, err = b.svc.Login(b.ctx, login, "wrong-wrong-wrong-wrong")
	f, _ = fault.As(err)
	require.Equal(t, fault.KindUnauthorized, f.Kind)
	require.NoError(t, b.svc.Logout(b.ctx, withCookie("POST", "")))
}

func TestFailuresAreRateLimited(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.svc.EnsureAdminTokens(b.ctx, "operator-chosen-secret-value")
	require.NoError(t, err)
	try := func(tok string) error {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "198.51.100.1:1234"
		r.Header.Set("Authorization", "Bearer "+tok)
		_, err := b.svc.Authenticate(r)
		return err
	}
	for i := 0; i < 21; i++ {
		f, _ := fault.As(try("apa_guess_guess_guess_guess_guess_guess_gues"))
		require.Equal(t, fault.KindUnauthorized, f.Kind, "attempt %d", i)
	}
	f, _ := fault.As(try("operator-chosen-secret-value"))
	require.Equal(t, fault.KindRateLimited, f.Kind, "even a valid token waits once the client is blocked")
	require.Positive(t, f.RetryAfter)
	b.clock.Advance(time.Minute)
	require.NoError(t, try("operator-chosen-secret-value"))
}

func TestLimitKeyGroupsIPv6By64(t *testing.T) {
	t.Parallel()
	require.Equal(t, "198.51.100.7", LimitKey("198.51.100.7"))
	require.Equal(t, "2001:db8:1:2::/64", LimitKey("2001:db8:1:2:aaaa:bbbb:cccc:dddd"))
	require.Equal(t, LimitKey("2001:db8:1:2::1"), LimitKey("2001:db8:1:2::ffff"))
}

func TestLimiterKeepsCountingUnderAFlood(t *testing.T) {
	t.Parallel()
	c := clock.NewFake(time.Unix(0, 0))
	l := NewLimiter(c, 20, time.Minute)
	for i := 0; i < maxClients; i++ {
		l.fails[fmt.Sprint("filler-", i)] = []time.Time{c.Now()}
	}
	for i := 0; i < 21; i++ {
		l.Fail("attacker")
	}
	blocked, _ := l.Blocked("attacker")
	require.True(t, blocked, "a full table must not let a new client fail open")
	require.LessOrEqual(t, len(l.fails), maxClients)
}

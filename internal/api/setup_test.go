package api

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/agentplane/agentplane/internal/activity"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/audit"
	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/clock"
	"github.com/agentplane/agentplane/internal/events"
	"github.com/agentplane/agentplane/internal/gateway"
	"github.com/agentplane/agentplane/internal/metrics"
	"github.com/agentplane/agentplane/internal/netguard"
	"github.com/agentplane/agentplane/internal/registry"
	"github.com/agentplane/agentplane/internal/scheduler"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/store/pgstore"
	"github.com/agentplane/agentplane/internal/store/sqlitestore"
	"github.com/agentplane/agentplane/internal/supervise"
	"github.com/agentplane/agentplane/internal/testenv"
	"github.com/stretchr/testify/require"
)

const adminToken = "test-admin-token-0123456789"

// testBundle is a full API over SQLite with a cast of credentials:
// own is a root workspace, other is its child (so the hierarchy lets them
// talk), revoked is a revoked token of own, removed is the token of a
// workspace that was deleted, session is an admin canvas session.
type testBundle struct {
	t        *testing.T
	ctx      context.Context
	server   *Server
	handler  http.Handler
	live     *supervise.Registry
	clock    *clock.Fake
	store    store.Store
	registry *registry.Service
	auth     *auth.Service
	hub      *events.Hub

	ownID, ownToken         string
	otherID, otherToken     string
	revokedToken            string
	removedID, removedToken string
	session                 string
}

func setup(t *testing.T) *testBundle { return setupOn(t, "sqlite") }

// backends lists the stores behavioural tests run on: SQLite always,
// PostgreSQL when a test database is configured (and always under CI).
func backends(t *testing.T) []string {
	if os.Getenv(testenv.PostgresURLEnv) != "" || testenv.InCI() {
		return []string{"sqlite", "postgres"}
	}
	return []string{"sqlite"}
}

func setupOn(t *testing.T, backend string) *testBundle {
	t.Helper()
	ctx := context.Background()
	c := clock.NewFake(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	var (
		st  store.Store
		err error
		hub *events.Hub
	)
	opts := store.Options{Now: c.Now, OnCommit: func(id int64) {
		if hub != nil {
			hub.Notify(id)
		}
	}}
	if backend == "postgres" {
		st, err = pgstore.Open(ctx, testenv.PostgresSchema(t), opts)
	} else {
		st, err = sqlitestore.Open(ctx, t.TempDir(), opts)
	}
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	require.NoError(t, st.Migrate(ctx))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	live := supervise.NewRegistry(c)
	rec := audit.NewRecorder(st, log)
	ips := auth.NewClientIP(nil)
	authSvc := auth.NewService(auth.Options{Store: st, Clock: c, Log: log, Audit: rec, ClientIP: ips, AllowedOrigins: []string{"https://canvas.example.com"}})
	_, err = authSvc.EnsureAdminTokens(ctx, adminToken)
	require.NoError(t, err)
	hub = events.NewHub(st, c, log, time.Second)
	reg := registry.New(registry.Options{
		Store: st, Clock: c, Log: log, Audit: rec, Hub: hub,
		URLs: netguard.New(netguard.Options{AllowPrivate: true}), HeartbeatTTL: 90 * time.Second,
	})
	gw := gateway.New(gateway.Deps{Store: st, CanTalk: reg.CanTalk, Client: netguard.New(netguard.Options{AllowPrivate: true}).Client(0),
		Clock: c, Log: log, ResponseCap: 1 << 16})
	engine := scheduler.NewEngine(scheduler.Options{Store: st, Clock: c, Log: log, Gateway: gw})
	s := New(Deps{
		Store: st, Live: live, Metrics: metrics.New(live), Authn: authSvc, Auth: authSvc, Registry: reg,
		Activity: activity.New(st, log, rec, 4096), Hub: hub, ClientIP: ips,
		Gateway: gw, Schedules: scheduler.NewService(st, engine), Audit: rec, Log: log, MaxBody: 1 << 20,
	})
	h, err := s.Handler()
	require.NoError(t, err)
	b := &testBundle{t: t, ctx: ctx, server: s, handler: h, live: live, clock: c, store: st, registry: reg, auth: authSvc, hub: hub}

	own, err := reg.Create(ctx, "admin:test", registry.CreateInput{Name: "Own"})
	require.NoError(t, err)
	b.ownID, b.ownToken = own.Workspace.ID, own.Token
	other, err := reg.Create(ctx, "admin:test", registry.CreateInput{Name: "Other", ParentID: b.ownID})
	require.NoError(t, err)
	b.otherID, b.otherToken = other.Workspace.ID, other.Token
	plain, tok, err := reg.MintToken(ctx, "admin:test", b.ownID)
	require.NoError(t, err)
	require.NoError(t, reg.RevokeToken(ctx, b.ownID, tok.ID))
	b.revokedToken = plain
	gone, err := reg.Create(ctx, "admin:test", registry.CreateInput{Name: "Gone"})
	require.NoError(t, err)
	_, err = reg.Delete(ctx, "admin:test", gone.Workspace.ID, false)
	require.NoError(t, err)
	b.removedID, b.removedToken = gone.Workspace.ID, gone.Token

	req := httptest.NewRequest("POST", "/auth/login", strings.NewReader(`{"token":"`+adminToken+`"}`))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	require.Equal(t, 200, w.Code, w.Body.String())
	for _, ck := range w.Result().Cookies() {
		if ck.Name == auth.SessionCookie {
			b.session = ck.Value
		}
	}
	require.NotEmpty(t, b.session)
	return b
}

type reqOpt func(*http.Request)

func bearer(tok string) reqOpt {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func header(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

func cookie(v string) reqOpt {
	return func(r *http.Request) { r.AddCookie(&http.Cookie{Name: auth.SessionCookie, Value: v}) }
}

func (b *testBundle) do(method, path string, body any, opts ...reqOpt) *httptest.ResponseRecorder {
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	default:
		buf, err := json.Marshal(v)
		require.NoError(b.t, err)
		rd = bytes.NewReader(buf)
	}
	req := httptest.NewRequest(method, path, rd)
	for _, o := range opts {
		o(req)
	}
	w := httptest.NewRecorder()
	b.handler.ServeHTTP(w, req)
	return w
}

func decodeBody[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &v), w.Body.String())
	return v
}

// ticket mints a fresh stream ticket for the own workspace.
func ticket(b *testBundle) reqOpt {
	w := b.do("POST", "/auth/ws-ticket", nil, bearer(b.ownToken))
	require.Equal(b.t, 201, w.Code, w.Body.String())
	tk := decodeBody[map[string]any](b.t, w)["ticket"].(string)
	return func(r *http.Request) {
		q := r.URL.Query()
		q.Set("ticket", tk)
		r.URL.RawQuery = q.Encode()
	}
}

// serve runs the hub's reader and a real HTTP server for stream tests.
func (b *testBundle) serve() string {
	b.t.Helper()
	require.NoError(b.t, b.hub.Prime(b.ctx))
	ctx, cancel := context.WithCancel(context.Background())
	heart := supervise.NewRegistry(b.clock).Declare("relay", time.Second)
	done := make(chan struct{})
	go func() { defer close(done); _ = b.hub.Run(ctx, heart) }()
	srv := httptest.NewServer(b.handler)
	b.t.Cleanup(func() { srv.Close(); cancel(); <-done; b.hub.Close() })
	return srv.URL
}

// caughtUp waits until the relay has read every stored event, so that
// GET /events (capped at the relay's position) shows them.
func (b *testBundle) caughtUp() {
	b.t.Helper()
	latest, err := b.store.LatestEventID(b.ctx)
	require.NoError(b.t, err)
	require.Eventually(b.t, func() bool {
		b.hub.Notify(0)
		pos, ok := b.hub.Position()
		return ok && pos >= latest
	}, 30*time.Second, 5*time.Millisecond)
}

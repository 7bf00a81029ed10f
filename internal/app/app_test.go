package app

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/agentplane/agentplane/internal/config"
	"github.com/agentplane/agentplane/internal/store/sqlitestore"
	"github.com/agentplane/agentplane/internal/supervise"
	"github.com/agentplane/agentplane/internal/testenv"
	"github.com/stretchr/testify/require"
)

const adminToken = "app-test-admin-token-xyz"

type testBundle struct {
	app    *App
	base   string
	cancel context.CancelFunc
	done   chan error
}

func testConfig(t *testing.T, args ...string) *config.Config {
	t.Helper()
	fs := newFlagSet()
	cfg := config.Register(fs, config.ScopeServe)
	base := []string{"--data-dir", t.TempDir(), "--admin-token", adminToken, "--shutdown-grace", "5s"}
	require.NoError(t, config.Parse(fs, append(base, args...), []string{}))
	require.NoError(t, cfg.Validate())
	return cfg
}

func start(t *testing.T, cfg *config.Config, opts ...Options) *testBundle {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	o := Options{}
	if len(opts) > 0 {
		o = opts[0]
	}
	o.Listener, o.Out = ln, io.Discard
	a, err := New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), o)
	require.NoError(t, err)
	b := &testBundle{app: a, base: "http://" + a.Addr(), cancel: cancel, done: make(chan error, 1)}
	go func() { b.done <- a.Run(ctx) }()
	t.Cleanup(func() { b.stop(t) })
	return b
}

func (b *testBundle) stop(t *testing.T) {
	t.Helper()
	b.cancel()
	select {
	case err := <-b.done:
		require.NoError(t, err)
		b.done <- nil // later calls return at once
	case <-time.After(15 * time.Second):
		t.Fatal("server did not stop within the grace period")
	}
}

func (b *testBundle) get(t *testing.T, path string, admin bool) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest("GET", b.base+path, nil)
	require.NoError(t, err)
	if admin {
		req.Header.Set("Authorization", "Bearer "+adminToken)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// eventually polls cond until it holds or the deadline passes. It waits for
// a state, it does not assert a duration.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func (b *testBundle) readyStatus(t *testing.T) int {
	code, _ := b.get(t, "/readyz", false)
	return code
}

func TestAppSQLite(t *testing.T) {
	t.Parallel()

	t.Run("StartsReadyAndStops", func(t *testing.T) {
		t.Parallel()
		b := start(t, testConfig(t))
		<-b.app.Migrated()
		code, body := b.get(t, "/readyz", false)
		require.Equal(t, 200, code)
		require.Equal(t, "sqlite", body["store"])
		code, _ = b.get(t, "/livez", false)
		require.Equal(t, 200, code)
		code, body = b.get(t, "/admin/liveness", true)
		require.Equal(t, 200, code)
		subs := body["subsystems"].(map[string]any)
		require.Contains(t, subs, "relay")
		require.Contains(t, subs, "migrate")
		b.stop(t)
		_, err := http.Get(b.base + "/healthz")
		require.Error(t, err, "listener closed after shutdown")
	})

	t.Run("PanickingLoopRestartedAndCounted", func(t *testing.T) {
		t.Parallel()
		b := start(t, testConfig(t))
		<-b.app.Migrated() // the admin token is ensured with the schema
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		b.app.Sup.Go(ctx, "flaky", time.Second, func(ctx context.Context, h *supervise.Heart) error {
			panic("flaky subsystem exploded")
		})
		eventually(t, "a restart after the panic", func() bool {
			_, body := b.get(t, "/admin/liveness", true)
			subs, _ := body["subsystems"].(map[string]any)
			st, _ := subs["flaky"].(map[string]any)
			restarts, _ := st["restarts"].(float64)
			return restarts >= 1 && st["last_panic"] == "flaky subsystem exploded"
		})
	})

	t.Run("ReadyzFollowsFileLock", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig(t)
		b := start(t, cfg)
		<-b.app.Migrated()
		require.Equal(t, 200, b.readyStatus(t))

		// A busy timeout lets BEGIN EXCLUSIVE wait out a write of the
		// server's own loops.
		other, err := sql.Open("sqlite", "file:"+filepath.Join(cfg.DataDir, sqlitestore.FileName)+"?_pragma=busy_timeout(5000)")
		require.NoError(t, err)
		defer other.Close()
		conn, err := other.Conn(context.Background())
		require.NoError(t, err)
		defer conn.Close()
		_, err = conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE")
		require.NoError(t, err)
		code, body := b.get(t, "/readyz", false)
		require.Equal(t, 503, code)
		require.Equal(t, "store unreachable", body["error"])
		_, err = conn.ExecContext(context.Background(), "COMMIT")
		require.NoError(t, err)
		require.Equal(t, 200, b.readyStatus(t))
	})

	t.Run("MetricsListenServesWithoutAuth", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		ln.Close()
		b := start(t, testConfig(t, "--metrics-listen", addr))
		resp, err := http.Get("http://" + b.app.MetricsAddr() + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		require.Equal(t, 200, resp.StatusCode)
		require.Contains(t, string(body), "agentplane_subsystem_beat_age_seconds")
		code, _ := b.get(t, "/metrics", false)
		require.Equal(t, 401, code, "the main listener still requires admin")
	})
}

// TestAppPostgresOutage stages a real outage: the server reaches PostgreSQL
// through a TCP proxy that the test cuts and restores.
func TestAppPostgresOutage(t *testing.T) {
	t.Parallel()
	dbURL := testenv.PostgresSchema(t)
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	proxy := testenv.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	q := u.Query()
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()

	t.Run("DownAtStartThenRecovers", func(t *testing.T) {
		proxy.Cut()
		b := start(t, testConfig(t, "--database-url", u.String(), "--secret-key", strings.Repeat("ab", 32)))
		code, body := b.get(t, "/readyz", false)
		require.Equal(t, 503, code)
		require.Equal(t, "store unreachable", body["error"])
		select {
		case <-b.app.Migrated():
			t.Fatal("migrated while the database was unreachable")
		default:
		}
		proxy.Restore()
		select {
		case <-b.app.Migrated():
		case <-time.After(30 * time.Second):
			t.Fatal("migration did not retry after the database returned")
		}
		eventually(t, "readyz 200", func() bool { return b.readyStatus(t) == 200 })

		// And a second outage while running.
		proxy.Cut()
		eventually(t, "readyz 503 during the outage", func() bool { return b.readyStatus(t) == 503 })
		proxy.Restore()
		eventually(t, "readyz 200 after the outage", func() bool { return b.readyStatus(t) == 200 })
		code, body = b.get(t, "/admin/liveness", true)
		require.Equal(t, 200, code)
		require.Contains(t, body["subsystems"], "relay")
	})
}

func TestNewFailsOnBusyPort(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	cfg := testConfig(t, "--listen", ln.Addr().String())
	_, err = New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "--listen") || errors.Is(err, net.ErrClosed), err.Error())
}

func newFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// TestReplicasWakeEachOtherThroughNotify runs two servers on one PostgreSQL
// database whose relays read only once an hour on their own: an event caused
// on replica A can reach a WebSocket client of replica B promptly only
// through LISTEN/NOTIFY.
func TestReplicasWakeEachOtherThroughNotify(t *testing.T) {
	t.Parallel()
	dbURL := testenv.PostgresSchema(t)
	testReplicasShareEvents(t, []string{"--database-url", dbURL, "--secret-key", strings.Repeat("ab", 32)}, "relay-listener")
}

// TestReplicasWakeEachOtherThroughRedis is the same with --redis-url, where
// Redis replaces LISTEN/NOTIFY.
func TestReplicasWakeEachOtherThroughRedis(t *testing.T) {
	t.Parallel()
	dbURL := testenv.PostgresSchema(t)
	redisURL := testenv.RedisURL(t)
	testReplicasShareEvents(t, []string{"--database-url", dbURL, "--secret-key", strings.Repeat("ab", 32), "--redis-url", redisURL}, "relay-redis")
}

func testReplicasShareEvents(t *testing.T, args []string, relay string) {
	a := start(t, testConfig(t, args...), Options{RelayInterval: time.Hour})
	b := start(t, testConfig(t, args...), Options{RelayInterval: time.Hour})
	<-a.app.Migrated()
	<-b.app.Migrated()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(b.base, "http")+"/ws",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + adminToken}}})
	require.NoError(t, err)
	defer c.CloseNow()

	req, err := http.NewRequest("POST", a.base+"/workspaces", strings.NewReader(`{"name":"Made on A"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 201, resp.StatusCode)

	for {
		_, msg, err := c.Read(ctx)
		require.NoError(t, err, "no event reached replica B")
		var e struct {
			Event   string         `json:"event"`
			Payload map[string]any `json:"payload"`
		}
		require.NoError(t, json.Unmarshal(msg, &e))
		if e.Event == "WORKSPACE_CREATED" {
			require.Equal(t, "Made on A", e.Payload["name"])
			break
		}
	}
	_, body := b.get(t, "/admin/liveness", true)
	require.Contains(t, body["subsystems"], relay)
}

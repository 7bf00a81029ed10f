package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/clock"
	"github.com/agentplane/agentplane/internal/metrics"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/store/sqlitestore"
	"github.com/agentplane/agentplane/internal/supervise"
	"github.com/stretchr/testify/require"
)

const adminToken = "test-admin-token-0123456789"

type testBundle struct {
	server  *Server
	handler http.Handler
	live    *supervise.Registry
	clock   *clock.Fake
	store   *sqlitestore.Store
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	c := clock.NewFake(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	st, err := sqlitestore.Open(context.Background(), t.TempDir(), store.Options{Now: c.Now})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	require.NoError(t, st.Migrate(context.Background()))
	live := supervise.NewRegistry(c)
	s := New(Deps{
		Store: st, Live: live, Metrics: metrics.New(live), Authn: auth.NewStaticAdmin(adminToken),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	h, err := s.Handler()
	require.NoError(t, err)
	return &testBundle{server: s, handler: h, live: live, clock: c, store: st}
}

func (b *testBundle) do(method, path, bearer string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	w := httptest.NewRecorder()
	b.handler.ServeHTTP(w, req)
	return w
}

// concretePath fills {params} with a syntactically valid value.
func concretePath(pattern string) string {
	out := pattern
	for strings.Contains(out, "{") {
		i := strings.Index(out, "{")
		j := strings.Index(out[i:], "}")
		out = out[:i] + "0190f5d2-8a4b-7c3e-9f1a-2b3c4d5e6f70" + out[i+j+1:]
	}
	return out
}

func TestRouteTable(t *testing.T) {
	t.Parallel()

	t.Run("EveryRouteHasAValidAuthClass", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, rt := range b.server.Routes() {
			require.True(t, rt.Auth.Valid(), "%s %s has auth class %q", rt.Method, rt.Pattern, rt.Auth)
			require.NotNil(t, rt.Handler, "%s %s", rt.Method, rt.Pattern)
		}
	})

	t.Run("BuildRefusesRouteWithoutAuthClass", func(t *testing.T) {
		t.Parallel()
		_, err := Build([]Route{{Method: "GET", Pattern: "/x", Handler: func(http.ResponseWriter, *http.Request) {}}},
			BuildOptions{Authn: auth.NewStaticAdmin("")})
		require.ErrorContains(t, err, `route GET /x: auth class ""`)
		_, err = Build([]Route{{Method: "GET", Pattern: "/x", Auth: "admin-ish", Handler: func(http.ResponseWriter, *http.Request) {}}},
			BuildOptions{Authn: auth.NewStaticAdmin("")})
		require.ErrorContains(t, err, "admin-ish")
	})

	t.Run("BuildRefusesDuplicatesAndMissingHandlers", func(t *testing.T) {
		t.Parallel()
		h := func(http.ResponseWriter, *http.Request) {}
		_, err := Build([]Route{{"GET", "/x", auth.Public, h}, {"GET", "/x", auth.Admin, h}}, BuildOptions{Authn: auth.NewStaticAdmin("")})
		require.ErrorContains(t, err, "registered twice")
		_, err = Build([]Route{{"GET", "/x", auth.Public, nil}}, BuildOptions{Authn: auth.NewStaticAdmin("")})
		require.ErrorContains(t, err, "no handler")
		_, err = Build(nil, BuildOptions{})
		require.ErrorContains(t, err, "no authenticator")
	})

	t.Run("RouterResolvesAgentPlatformPairs", func(t *testing.T) {
		t.Parallel()
		// The standard mux refuses this pair; the route table must accept it.
		ok := func(name string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name+":"+r.PathValue("id")) }
		}
		h, err := Build([]Route{
			{"GET", "/registry/discover/{id}", auth.Public, ok("discover")},
			{"GET", "/registry/{id}/peers", auth.Public, ok("peers")},
		}, BuildOptions{Authn: auth.NewStaticAdmin("")})
		require.NoError(t, err)
		for path, want := range map[string]string{"/registry/discover/abc": "discover:abc", "/registry/abc/peers": "peers:abc"} {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
			require.Equal(t, want, w.Body.String())
		}
	})
}

// TestAuthMatrix is generated from the route table: every route is called with
// each kind of credential this build knows, and the status must follow from
// its auth class alone. A new route cannot escape it.
func TestAuthMatrix(t *testing.T) {
	t.Parallel()
	b := setup(t)
	creds := []struct {
		name   string
		bearer string
		header map[string]string
	}{
		{name: "None"},
		{name: "Admin", bearer: adminToken},
		{name: "InvalidBearer", bearer: "apa_not-a-real-token"},
		{name: "AdminTokenWithSuffix", bearer: adminToken + "x"},
		{name: "EmptyBearer", header: map[string]string{"Authorization": "Bearer "}},
		{name: "BasicScheme", header: map[string]string{"Authorization": "Basic " + adminToken}},
		{name: "InvalidBearerAllowedOrigin", bearer: "wrong", header: map[string]string{"Origin": "http://example.com"}},
	}
	for _, rt := range b.server.Routes() {
		for _, c := range creds {
			t.Run(strings.ReplaceAll(rt.Method+rt.Pattern, "/", "_")+"/"+c.name, func(t *testing.T) {
				req := httptest.NewRequest(rt.Method, concretePath(rt.Pattern), nil)
				if c.bearer != "" {
					req.Header.Set("Authorization", "Bearer "+c.bearer)
				}
				for k, v := range c.header {
					req.Header.Set(k, v)
				}
				w := httptest.NewRecorder()
				b.handler.ServeHTTP(w, req)
				switch {
				case rt.Auth == auth.Public:
					require.NotEqual(t, http.StatusUnauthorized, w.Code)
					require.NotEqual(t, http.StatusForbidden, w.Code)
				case c.name == "Admin" && (rt.Auth == auth.Admin || rt.Auth == auth.AdminOrOwn || rt.Auth == auth.AdminOrWorkspace):
					require.Less(t, w.Code, 400, w.Body.String())
				case c.name == "Admin":
					require.Equal(t, http.StatusForbidden, w.Code, "admin on a workspace-only route")
				default:
					require.Equal(t, http.StatusUnauthorized, w.Code, w.Body.String())
					require.JSONEq(t, `{"error":"missing or invalid credentials"}`, w.Body.String(), "failures look alike")
				}
			})
		}
	}
}

func TestProbes(t *testing.T) {
	t.Parallel()

	t.Run("HealthzAndHealth", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, p := range []string{"/healthz", "/health"} {
			w := b.do("GET", p, "")
			require.Equal(t, 200, w.Code)
			require.JSONEq(t, `{"status":"ok"}`, w.Body.String())
		}
	})

	t.Run("LivezNamesStaleSubsystems", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		h := b.live.Declare("scheduler", time.Second)
		b.live.Declare("relay", 10*time.Second).Beat()
		h.Beat()
		require.Equal(t, 200, b.do("GET", "/livez", "").Code)
		b.clock.Advance(3*time.Second + time.Millisecond)
		w := b.do("GET", "/livez", "")
		require.Equal(t, 503, w.Code)
		require.JSONEq(t, `{"status":"stale","stale":["scheduler"]}`, w.Body.String())
		h.Beat()
		require.Equal(t, 200, b.do("GET", "/livez", "").Code)
	})

	t.Run("AdminLivenessShowsEachSubsystem", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.live.Declare("relay", time.Second).Beat()
		w := b.do("GET", "/admin/liveness", adminToken)
		require.Equal(t, 200, w.Code)
		require.Contains(t, w.Body.String(), `"relay":{"last_tick_at":"2027-01-01T00:00:00Z","seconds_ago":0,"interval_seconds":1,"stale":false,"restarts":0,"panics":0,"last_panic":""`)
	})

	t.Run("ReadyzReportsUnmigratedStore", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.Equal(t, 200, b.do("GET", "/readyz", "").Code)
		fresh, err := sqlitestore.Open(context.Background(), t.TempDir(), store.Options{})
		require.NoError(t, err)
		defer fresh.Close()
		s := New(Deps{Store: fresh, Live: b.live, Authn: auth.NewStaticAdmin("")})
		h, err := s.Handler()
		require.NoError(t, err)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
		require.Equal(t, 503, w.Code)
		require.JSONEq(t, `{"status":"unavailable","error":"store not migrated"}`, w.Body.String())
	})

	t.Run("MetricsExposeLiveness", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.live.Declare("relay", time.Second).Beat()
		w := b.do("GET", "/metrics", adminToken)
		require.Equal(t, 200, w.Code)
		body := w.Body.String()
		for _, want := range []string{
			`agentplane_subsystem_beat_age_seconds{subsystem="relay"} 0`,
			`agentplane_subsystem_restarts_total{subsystem="relay"} 0`,
			`agentplane_subsystem_panics_total{subsystem="relay"} 0`,
			"go_goroutines", "process_resident_memory_bytes",
		} {
			require.Contains(t, body, want)
		}
	})

	t.Run("HandlerPanicIs500NotACrash", func(t *testing.T) {
		t.Parallel()
		h, err := Build([]Route{{"GET", "/boom", auth.Public, func(http.ResponseWriter, *http.Request) { panic("bug") }}},
			BuildOptions{Authn: auth.NewStaticAdmin(""), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		require.NoError(t, err)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/boom", nil))
		require.Equal(t, 500, w.Code)
		require.JSONEq(t, `{"error":"internal error"}`, w.Body.String())
	})

	t.Run("UnknownRouteAndMethod", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.Equal(t, 404, b.do("GET", "/nope", "").Code)
		w := b.do("POST", "/healthz", "")
		require.Equal(t, 405, w.Code)
		require.Contains(t, w.Body.String(), "not allowed")
	})
}

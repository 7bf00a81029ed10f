package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/store/sqlitestore"
	"github.com/stretchr/testify/require"
)

func TestProbes(t *testing.T) {
	t.Parallel()

	t.Run("HealthzAndHealth", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, p := range []string{"/healthz", "/health"} {
			w := b.do("GET", p, nil)
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
		require.Equal(t, 200, b.do("GET", "/livez", nil).Code)
		b.clock.Advance(3*time.Second + time.Millisecond)
		w := b.do("GET", "/livez", nil)
		require.Equal(t, 503, w.Code)
		require.JSONEq(t, `{"status":"stale","stale":["scheduler"]}`, w.Body.String())
		h.Beat()
		require.Equal(t, 200, b.do("GET", "/livez", nil).Code)
	})

	t.Run("AdminLivenessShowsEachSubsystem", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.live.Declare("relay", time.Second).Beat()
		w := b.do("GET", "/admin/liveness", nil, bearer(adminToken))
		require.Equal(t, 200, w.Code)
		require.Contains(t, w.Body.String(), `"relay":{"last_tick_at":"2027-01-01T00:00:00Z","seconds_ago":0,"interval_seconds":1,"stale":false,"restarts":0,"panics":0,"last_panic":""`)
	})

	t.Run("ReadyzReportsUnmigratedStore", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.Equal(t, 200, b.do("GET", "/readyz", nil).Code)
		fresh, err := sqlitestore.Open(context.Background(), t.TempDir(), store.Options{})
		require.NoError(t, err)
		defer fresh.Close()
		s := New(Deps{Store: fresh, Live: b.live, Authn: nopAuthn{}})
		h, err := s.Handler()
		require.NoError(t, err)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
		require.Equal(t, 503, w.Code)
		require.JSONEq(t, `{"status":"unavailable","error":"store not migrated"}`, w.Body.String())
	})

	t.Run("ReadyOnlyAfterStartUpFinished", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		started := make(chan struct{})
		s := New(Deps{Store: b.store, Live: b.live, Authn: nopAuthn{}, Started: started})
		h, err := s.Handler()
		require.NoError(t, err)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
		require.Equal(t, 503, w.Code, "migrated, but the admin tokens may not be stored yet")
		require.JSONEq(t, `{"status":"unavailable","error":"starting"}`, w.Body.String())
		close(started)
		w = httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
		require.Equal(t, 200, w.Code)
	})

	t.Run("MetricsExposeLiveness", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.live.Declare("relay", time.Second).Beat()
		w := b.do("GET", "/metrics", nil, bearer(adminToken))
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
		b := setup(t)
		h, err := Build([]Route{{"GET", "/boom", auth.Public, func(http.ResponseWriter, *http.Request) { panic("bug") }}},
			BuildOptions{Authn: nopAuthn{}, Log: b.server.d.Log})
		require.NoError(t, err)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/boom", nil))
		require.Equal(t, 500, w.Code)
		require.JSONEq(t, `{"error":"internal error"}`, w.Body.String())
	})

	t.Run("UnknownRouteAndMethod", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.Equal(t, 404, b.do("GET", "/nope", nil).Code)
		w := b.do("POST", "/healthz", nil)
		require.Equal(t, 405, w.Code)
		require.Contains(t, w.Body.String(), "not allowed")
	})
}

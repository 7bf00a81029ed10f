package api

import (
	"time"

	"github.com/agentplane/agentplane/internal/auth"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// newCardServer is a real agent-card endpoint on loopback whose health the
// test toggles.
func newCardServer(t *testing.T) (string, *atomic.Bool) {
	t.Helper()
	healthy := &atomic.Bool{}
	healthy.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path != "/.well-known/agent-card.json" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"name":"agent"}`))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, healthy
}

func httpClient() *http.Client { return &http.Client{Timeout: 5 * time.Second} }

func adminPrincipal() *auth.Principal { return &auth.Principal{Kind: auth.KindAdmin, Name: "test"} }

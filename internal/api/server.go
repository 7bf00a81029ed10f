package api

import (
	"context"
	"errors"
	"github.com/agentplane/agentplane/internal/activity"
	"log/slog"
	"net/http"
	"time"

	"github.com/agentplane/agentplane/internal/audit"
	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/events"
	"github.com/agentplane/agentplane/internal/gateway"
	"github.com/agentplane/agentplane/internal/httpapi"
	"github.com/agentplane/agentplane/internal/metrics"
	"github.com/agentplane/agentplane/internal/registry"
	"github.com/agentplane/agentplane/internal/scheduler"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/supervise"
)

// ReadyTimeout bounds the store check behind /readyz so that a hung database
// answers 503 quickly instead of hanging the load balancer's probe.
const ReadyTimeout = 2 * time.Second

// Deps are the collaborators the handlers use.
type Deps struct {
	Store    store.Store
	Live     *supervise.Registry
	Metrics  *metrics.Metrics
	Authn    auth.Authenticator
	Auth     *auth.Service
	Registry *registry.Service
	Activity *activity.Service
	Hub      *events.Hub
	Gateway  *gateway.Gateway
	// Schedules is the schedules API's domain side.
	Schedules *scheduler.Service
	// Started, when set, is closed once start-up finished (migrations, admin
	// tokens, the relay's start position, the loops); /readyz says 503 before.
	Started <-chan struct{}
	// PingInterval is how often idle streams are pinged (default 20 s).
	PingInterval time.Duration
	ClientIP     *auth.ClientIP
	Audit        *audit.Recorder
	Log          *slog.Logger
	MaxBody      int64
}

// Server holds the handlers.
type Server struct{ d Deps }

// New returns the handlers over d.
func New(d Deps) *Server { return &Server{d: d} }

// Routes is the route table of agentplane. Every route names its auth class.
func (s *Server) Routes() []Route {
	return []Route{
		{http.MethodGet, "/healthz", auth.Public, s.healthz},
		{http.MethodGet, "/health", auth.Public, s.healthz},
		{http.MethodGet, "/livez", auth.Public, s.livez},
		{http.MethodGet, "/readyz", auth.Public, s.readyz},
		{http.MethodGet, "/admin/liveness", auth.Admin, s.adminLiveness},
		{http.MethodGet, "/metrics", auth.Admin, s.metrics},

		{http.MethodPost, "/auth/login", auth.Public, s.login},
		{http.MethodPost, "/auth/logout", auth.Public, s.logout},
		{http.MethodGet, "/admin/tokens", auth.Admin, s.listAdminTokens},
		{http.MethodPost, "/admin/tokens", auth.Admin, s.mintAdminToken},
		{http.MethodDelete, "/admin/tokens/{tokenId}", auth.Admin, s.revokeAdminToken},

		{http.MethodPost, "/workspaces", auth.Admin, s.createWorkspace},
		{http.MethodGet, "/workspaces", auth.Admin, s.listWorkspaces},
		{http.MethodGet, "/workspaces/{id}", auth.AdminOrOwn, s.getWorkspace},
		{http.MethodPatch, "/workspaces/{id}", auth.AdminOrOwn, s.patchWorkspace},
		{http.MethodDelete, "/workspaces/{id}", auth.Admin, s.deleteWorkspace},
		{http.MethodPost, "/workspaces/{id}/pause", auth.Admin, s.pauseWorkspace},
		{http.MethodPost, "/workspaces/{id}/resume", auth.Admin, s.resumeWorkspace},
		{http.MethodPost, "/workspaces/{id}/tokens", auth.Admin, s.mintWorkspaceToken},
		{http.MethodGet, "/workspaces/{id}/tokens", auth.Admin, s.listWorkspaceTokens},
		{http.MethodDelete, "/workspaces/{id}/tokens/{tokenId}", auth.Admin, s.revokeWorkspaceToken},

		{http.MethodPost, "/registry/register", auth.OwnWorkspace, s.register},
		{http.MethodPost, "/registry/heartbeat", auth.OwnWorkspace, s.heartbeat},
		{http.MethodPost, "/registry/update-card", auth.OwnWorkspace, s.updateCard},
		{http.MethodGet, "/registry/discover/{id}", auth.AnyWorkspace, s.discover},
		{http.MethodGet, "/registry/{id}/peers", auth.OwnWorkspace, s.peers},
		{http.MethodPost, "/registry/check-access", auth.AdminOrWorkspace, s.checkAccess},

		{http.MethodPost, "/workspaces/{id}/activity", auth.OwnWorkspace, s.postActivity},
		{http.MethodGet, "/workspaces/{id}/activity", auth.AdminOrOwn, s.listActivity},
		{http.MethodPost, "/workspaces/{id}/notify", auth.OwnWorkspace, s.notify},
		{http.MethodGet, "/events", auth.AdminOrWorkspace, s.listEvents},
		{http.MethodGet, "/admin/security-events", auth.Admin, s.listSecurityEvents},
		{http.MethodPost, "/auth/ws-ticket", auth.AdminOrWorkspace, s.issueTicket},
		{http.MethodGet, "/events/stream", auth.Stream, s.sseStream},
		{http.MethodGet, "/ws", auth.Stream, s.wsStream},
		{http.MethodPost, "/workspaces/{id}/a2a", auth.AdminOrWorkspace, s.a2a},

		{http.MethodGet, "/workspaces/{id}/schedules", auth.AdminOrOwn, s.listSchedules},
		{http.MethodPost, "/workspaces/{id}/schedules", auth.AdminOrOwn, s.createSchedule},
		{http.MethodGet, "/workspaces/{id}/schedules/{sid}", auth.AdminOrOwn, s.getSchedule},
		{http.MethodPatch, "/workspaces/{id}/schedules/{sid}", auth.AdminOrOwn, s.patchSchedule},
		{http.MethodDelete, "/workspaces/{id}/schedules/{sid}", auth.AdminOrOwn, s.deleteSchedule},
		{http.MethodPost, "/workspaces/{id}/schedules/{sid}/pause", auth.AdminOrOwn, s.pauseSchedule},
		{http.MethodPost, "/workspaces/{id}/schedules/{sid}/resume", auth.AdminOrOwn, s.resumeSchedule},
		{http.MethodPost, "/workspaces/{id}/schedules/{sid}/run", auth.AdminOrOwn, s.runSchedule},
		{http.MethodGet, "/workspaces/{id}/schedules/{sid}/history", auth.AdminOrOwn, s.scheduleHistory},
		{http.MethodGet, "/workspaces/{id}/schedules/{sid}/runs/{rid}", auth.AdminOrOwn, s.getRun},
		{http.MethodPost, "/workspaces/{id}/schedules/{sid}/runs/{rid}/cancel", auth.AdminOrOwn, s.cancelRun},
		{http.MethodGet, "/admin/scheduler", auth.Admin, s.schedulerOverview},
		{http.MethodGet, "/admin/schedules/health", auth.Admin, s.schedulesHealth},
	}
}

// decode reads the JSON body with the configured cap, answering the error
// itself; it reports whether the handler should go on.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, dst any) bool {
	if err := httpapi.Decode(w, r, s.d.MaxBody, dst); err != nil {
		s.fail(w, r, err)
		return false
	}
	return true
}

// fail answers err through the one error mapping.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	httpapi.WriteError(w, r, s.d.Log, err)
}

func (s *Server) zeroTime() time.Time { return time.Time{} }

// Handler builds the mux over Routes.
func (s *Server) Handler() (http.Handler, error) {
	o := BuildOptions{Authn: s.d.Authn, Metrics: s.d.Metrics, Log: s.d.Log, Audit: s.d.Audit, ClientIP: s.d.ClientIP}
	if s.d.Auth != nil {
		o.Tickets = s.d.Auth
	}
	return Build(s.Routes(), o)
}

// healthz: the process serves HTTP.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// livez: every subsystem beat within three intervals; 503 names the stale
// ones so that a restart policy (and a human) can see what is stuck.
func (s *Server) livez(w http.ResponseWriter, r *http.Request) {
	stale := s.d.Live.Stale()
	if len(stale) > 0 {
		httpapi.WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "stale", "stale": stale})
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"status": "ok", "stale": []string{}})
}

// readyz: the store is reachable and migrated.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
	defer cancel()
	if err := s.d.Store.Ready(ctx); err != nil {
		reason := "store unreachable"
		if errors.Is(err, store.ErrNotMigrated) {
			reason = "store not migrated"
		}
		w.Header().Set("Retry-After", "2")
		httpapi.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": reason})
		return
	}
	if s.d.Started != nil {
		select {
		case <-s.d.Started:
		default:
			// Migrated but the admin tokens may not be stored yet: a client
			// that trusted a 200 here would get a 401.
			w.Header().Set("Retry-After", "1")
			httpapi.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": "starting"})
			return
		}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready", "store": s.d.Store.Dialect()})
}

func (s *Server) adminLiveness(w http.ResponseWriter, r *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"subsystems": s.d.Live.Snapshot()})
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	s.d.Metrics.Handler().ServeHTTP(w, r)
}

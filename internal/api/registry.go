package api

import (
	"encoding/base64"
	"encoding/json"
	"net/http"

	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/fault"
	"github.com/agentplane/agentplane/internal/httpapi"
	"github.com/agentplane/agentplane/internal/registry"
)

func (s *Server) caller(r *http.Request) registry.Caller {
	return registry.Caller{
		Principal: auth.FromContext(r.Context()),
		ClientIP:  s.d.ClientIP.Of(r),
		HeaderID:  r.Header.Get("X-Workspace-ID"),
	}
}

func (s *Server) heartbeatInterval() int {
	return int(s.d.Registry.HeartbeatInterval().Seconds())
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ID        string          `json:"id"`
		URL       string          `json:"url"`
		AgentCard json.RawMessage `json:"agent_card"`
	}
	if !s.decode(w, r, &body) {
		return
	}
	ws, err := s.d.Registry.Register(r.Context(), s.caller(r), registry.RegisterInput{ID: body.ID, URL: body.URL, AgentCard: body.AgentCard})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"status": "registered", "workspace_id": ws.ID, "workspace_status": ws.Status,
		"heartbeat_interval_seconds": s.heartbeatInterval(),
		// The key of the X-Agentplane-Caller signature (pkg/callersig); only
		// the workspace's own token can obtain it.
		"caller_secret": base64.RawURLEncoding.EncodeToString(ws.OutboundSecret),
	})
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request) {
	var body struct {
		WorkspaceID   string  `json:"workspace_id"`
		ActiveTasks   int     `json:"active_tasks"`
		CurrentTask   string  `json:"current_task"`
		ErrorRate     float64 `json:"error_rate"`
		SampleError   string  `json:"sample_error"`
		UptimeSeconds int64   `json:"uptime_seconds"`
	}
	if !s.decode(w, r, &body) {
		return
	}
	ws, err := s.d.Registry.Heartbeat(r.Context(), s.caller(r), registry.HeartbeatInput{
		WorkspaceID: body.WorkspaceID, ActiveTasks: body.ActiveTasks, CurrentTask: body.CurrentTask,
		ErrorRate: body.ErrorRate, SampleError: body.SampleError, UptimeSeconds: body.UptimeSeconds,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"status": "ok", "workspace_status": ws.Status, "heartbeat_interval_seconds": s.heartbeatInterval(),
	})
}

func (s *Server) updateCard(w http.ResponseWriter, r *http.Request) {
	var body struct {
		WorkspaceID string          `json:"workspace_id"`
		AgentCard   json.RawMessage `json:"agent_card"`
	}
	if !s.decode(w, r, &body) {
		return
	}
	ws, err := s.d.Registry.UpdateCard(r.Context(), s.caller(r), body.WorkspaceID, body.AgentCard)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"status": "updated", "workspace_id": ws.ID})
}

func (s *Server) discover(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	c := s.caller(r)
	if err := s.d.Registry.CheckIdentity(r.Context(), c, "", ""); err != nil {
		s.fail(w, r, err)
		return
	}
	ws, err := s.d.Registry.Discover(r.Context(), c, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"id": ws.ID, "name": ws.Name, "url": ws.URL, "status": ws.Status})
}

func (s *Server) peers(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.d.Registry.CheckIdentity(r.Context(), s.caller(r), "", ""); err != nil {
		s.fail(w, r, err)
		return
	}
	peers, err := s.d.Registry.Peers(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, peers)
}

func (s *Server) checkAccess(w http.ResponseWriter, r *http.Request) {
	var body struct {
		CallerID string `json:"caller_id"`
		TargetID string `json:"target_id"`
	}
	if !s.decode(w, r, &body) {
		return
	}
	for field, v := range map[string]string{"caller_id": body.CallerID, "target_id": body.TargetID} {
		if v == "" {
			s.fail(w, r, fault.Invalid(field, "is required"))
			return
		}
	}
	c := s.caller(r)
	allowed, err := s.d.Registry.CheckAccess(r.Context(), c.Principal, c.ClientIP, c.HeaderID, body.CallerID, body.TargetID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]bool{"allowed": allowed})
}

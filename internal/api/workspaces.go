package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/httpapi"
	"github.com/agentplane/agentplane/internal/registry"
	"github.com/agentplane/agentplane/internal/store"
)

// workspaceJSON is the API shape of a workspace (SPEC §3, §5).
type workspaceJSON struct {
	ID                 string          `json:"id"`
	Name               string          `json:"name"`
	Role               string          `json:"role"`
	ParentID           *string         `json:"parent_id"`
	URL                string          `json:"url"`
	AgentCard          json.RawMessage `json:"agent_card"`
	Status             string          `json:"status"`
	DegradedReasons    []string        `json:"degraded_reasons"`
	MaxConcurrentTasks int             `json:"max_concurrent_tasks"`
	ActiveTasks        int             `json:"active_tasks"`
	Inflight           int             `json:"inflight"`
	CurrentTask        string          `json:"current_task"`
	LastHeartbeatAt    *time.Time      `json:"last_heartbeat_at"`
	LastErrorRate      float64         `json:"last_error_rate"`
	LastSampleError    string          `json:"last_sample_error"`
	UptimeSeconds      int64           `json:"uptime_seconds"`
	CreatedAt          time.Time       `json:"created_at"`
	UpdatedAt          time.Time       `json:"updated_at"`
}

func toWorkspaceJSON(w store.Workspace) workspaceJSON {
	out := workspaceJSON{
		ID: w.ID, Name: w.Name, Role: w.Role, URL: w.URL, AgentCard: w.AgentCard, Status: w.Status,
		DegradedReasons: w.DegradedReasons, MaxConcurrentTasks: w.MaxConcurrentTasks, ActiveTasks: w.ActiveTasks,
		CurrentTask: w.CurrentTask, LastErrorRate: w.LastErrorRate, LastSampleError: w.LastSampleError,
		UptimeSeconds: w.UptimeSeconds, CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt,
	}
	if w.ParentID != "" {
		out.ParentID = &w.ParentID
	}
	if len(out.AgentCard) == 0 {
		out.AgentCard = json.RawMessage("null")
	}
	if out.DegradedReasons == nil {
		out.DegradedReasons = []string{}
	}
	if !w.LastHeartbeatAt.IsZero() {
		t := w.LastHeartbeatAt
		out.LastHeartbeatAt = &t
	}
	return out
}

func (s *Server) createWorkspace(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name               string `json:"name"`
		Role               string `json:"role"`
		ParentID           string `json:"parent_id"`
		MaxConcurrentTasks *int   `json:"max_concurrent_tasks"`
		URL                string `json:"url"`
	}
	if !s.decode(w, r, &body) {
		return
	}
	p := auth.FromContext(r.Context())
	c, err := s.d.Registry.Create(r.Context(), p.Actor(), registry.CreateInput{
		Name: body.Name, Role: body.Role, ParentID: body.ParentID, MaxConcurrentTasks: body.MaxConcurrentTasks, URL: body.URL,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, map[string]any{
		"id": c.Workspace.ID, "workspace_id": c.Workspace.ID, "status": c.Workspace.Status, "auth_token": c.Token,
		"workspace": toWorkspaceJSON(c.Workspace),
	})
}

func (s *Server) listWorkspaces(w http.ResponseWriter, r *http.Request) {
	limit, after, err := pageAfter(r, 1000)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ws, err := s.d.Registry.List(r.Context(), store.WorkspaceFilter{AfterID: after, Limit: limit, IncludeRemoved: r.URL.Query().Get("include_removed") == "true"})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ids := make([]string, len(ws))
	for i, x := range ws {
		ids[i] = x.ID
	}
	inflight, err := s.d.Registry.Inflight(r.Context(), ids)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeList(w, ws, func(x store.Workspace) workspaceJSON {
		j := toWorkspaceJSON(x)
		j.Inflight = inflight[x.ID]
		return j
	})
}

func (s *Server) getWorkspace(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ws, err := s.d.Registry.Get(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	j := toWorkspaceJSON(ws)
	if n, err := s.d.Registry.Inflight(r.Context(), []string{ws.ID}); err == nil {
		j.Inflight = n[ws.ID]
	}
	httpapi.WriteJSON(w, http.StatusOK, j)
}

func (s *Server) patchWorkspace(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var body struct {
		Name               *string        `json:"name"`
		Role               *string        `json:"role"`
		ParentID           optionalString `json:"parent_id"`
		MaxConcurrentTasks *int           `json:"max_concurrent_tasks"`
		URL                *string        `json:"url"`
	}
	if !s.decode(w, r, &body) {
		return
	}
	in := registry.PatchInput{Name: body.Name, Role: body.Role, MaxConcurrentTasks: body.MaxConcurrentTasks, URL: body.URL}
	if body.ParentID.Set {
		v := body.ParentID.Value
		in.ParentID = &v
	}
	ws, err := s.d.Registry.Patch(r.Context(), auth.FromContext(r.Context()), id, in)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, toWorkspaceJSON(ws))
}

func (s *Server) deleteWorkspace(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	confirm := r.URL.Query().Get("confirm") == "true"
	removed, err := s.d.Registry.Delete(r.Context(), auth.FromContext(r.Context()).Actor(), id, confirm)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if removed == nil {
		removed = []string{}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"status": store.StatusRemoved, "removed": removed})
}

func (s *Server) pauseWorkspace(w http.ResponseWriter, r *http.Request) {
	s.pauseResume(w, r, true)
}

func (s *Server) resumeWorkspace(w http.ResponseWriter, r *http.Request) {
	s.pauseResume(w, r, false)
}

func (s *Server) pauseResume(w http.ResponseWriter, r *http.Request, pause bool) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	actor := auth.FromContext(r.Context()).Actor()
	if pause {
		err = s.d.Registry.Pause(r.Context(), actor, id)
	} else {
		err = s.d.Registry.Resume(r.Context(), actor, id)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ws, err := s.d.Registry.Get(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, toWorkspaceJSON(ws))
}

type tokenJSON struct {
	ID          string     `json:"id"`
	Name        string     `json:"name,omitempty"`
	Prefix      string     `json:"prefix"`
	WorkspaceID string     `json:"workspace_id,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	CreatedBy   string     `json:"created_by"`
	LastUsedAt  *time.Time `json:"last_used_at"`
	RevokedAt   *time.Time `json:"revoked_at"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func toTokenJSON(t store.Token) tokenJSON {
	return tokenJSON{ID: t.ID, Name: t.Name, Prefix: t.Prefix, WorkspaceID: t.WorkspaceID, CreatedAt: t.CreatedAt,
		CreatedBy: t.CreatedBy, LastUsedAt: timePtr(t.LastUsedAt), RevokedAt: timePtr(t.RevokedAt)}
}

func (s *Server) mintWorkspaceToken(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	plain, tok, err := s.d.Registry.MintToken(r.Context(), auth.FromContext(r.Context()).Actor(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, map[string]any{"id": tok.ID, "auth_token": plain, "prefix": tok.Prefix, "workspace_id": id})
}

func (s *Server) listWorkspaceTokens(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	limit, after, err := pageAfter(r, 1000)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	toks, err := s.d.Registry.ListTokens(r.Context(), id, store.TokenFilter{AfterID: after, Limit: limit})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeList(w, toks, toTokenJSON)
}

func (s *Server) revokeWorkspaceToken(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	tokID, err := pathID(r, "tokenId")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.d.Registry.RevokeToken(r.Context(), id, tokID); err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "revoked", "id": tokID})
}

package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/agentplane/agentplane/internal/activity"
	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/events"
	"github.com/agentplane/agentplane/internal/fault"
	"github.com/agentplane/agentplane/internal/httpapi"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/google/uuid"
)

type activityJSON struct {
	ID                string          `json:"id"`
	WorkspaceID       string          `json:"workspace_id"`
	ActivityType      string          `json:"activity_type"`
	Source            string          `json:"source"`
	SourceID          string          `json:"source_id"`
	TargetID          string          `json:"target_id"`
	Method            string          `json:"method"`
	Summary           string          `json:"summary"`
	RequestBody       string          `json:"request_body"`
	ResponseBody      string          `json:"response_body"`
	RequestTruncated  bool            `json:"request_truncated"`
	ResponseTruncated bool            `json:"response_truncated"`
	Status            string          `json:"status"`
	ErrorDetail       string          `json:"error_detail"`
	DurationMS        int64           `json:"duration_ms"`
	Attachments       json.RawMessage `json:"attachments,omitempty"`
	CreatedAt         time.Time       `json:"created_at"`
}

func toActivityJSON(a store.Activity) activityJSON {
	return activityJSON{
		ID: a.ID, WorkspaceID: a.WorkspaceID, ActivityType: a.ActivityType, Source: a.Source, SourceID: a.SourceID,
		TargetID: a.TargetID, Method: a.Method, Summary: a.Summary, RequestBody: a.RequestBody, ResponseBody: a.ResponseBody,
		RequestTruncated: a.RequestTruncated, ResponseTruncated: a.ResponseTruncated, Status: a.Status,
		ErrorDetail: a.ErrorDetail, DurationMS: a.DurationMS, Attachments: a.Attachments, CreatedAt: a.CreatedAt,
	}
}

func (s *Server) activityCaller(r *http.Request) activity.Caller {
	return activity.Caller{Principal: auth.FromContext(r.Context()), ClientIP: s.d.ClientIP.Of(r)}
}

func (s *Server) postActivity(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ActivityType string          `json:"activity_type"`
		Method       string          `json:"method"`
		Summary      string          `json:"summary"`
		TargetID     string          `json:"target_id"`
		SourceID     string          `json:"source_id"`
		Status       string          `json:"status"`
		ErrorDetail  string          `json:"error_detail"`
		DurationMS   int64           `json:"duration_ms"`
		RequestBody  json.RawMessage `json:"request_body"`
		ResponseBody json.RawMessage `json:"response_body"`
	}
	if !s.decode(w, r, &body) {
		return
	}
	a, err := s.d.Activity.Log(r.Context(), s.activityCaller(r), activity.Input{
		ActivityType: body.ActivityType, Method: body.Method, Summary: body.Summary, TargetID: body.TargetID,
		SourceID: body.SourceID, Status: body.Status, ErrorDetail: body.ErrorDetail, DurationMS: body.DurationMS,
		RequestBody: body.RequestBody, ResponseBody: body.ResponseBody,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"status": "logged", "id": a.ID, "request_truncated": a.RequestTruncated, "response_truncated": a.ResponseTruncated,
	})
}

func (s *Server) listActivity(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	limit, err := limitParam(r, 100, 500)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	before, err := cursorParam(r, "before")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	rows, err := s.d.Activity.List(r.Context(), store.ActivityFilter{
		WorkspaceID: id, Type: q.Get("type"), Source: q.Get("source"), BeforeID: before, Limit: limit,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeList(w, rows, toActivityJSON)
}

func (s *Server) notify(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Message     string                `json:"message"`
		Attachments []activity.Attachment `json:"attachments"`
	}
	if !s.decode(w, r, &body) {
		return
	}
	a, err := s.d.Activity.Notify(r.Context(), s.activityCaller(r), body.Message, body.Attachments)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"status": "delivered", "id": a.ID, "truncated": a.RequestTruncated})
}

// listEvents is GET /events for polling clients; the X-Next-Since header
// carries the id to resume after, even when visibility emptied the page.
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := limitParam(r, 100, 1000)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var since int64
	if v := q.Get("since"); v != "" {
		if since, err = strconv.ParseInt(v, 10, 64); err != nil || since < 0 {
			s.fail(w, r, fault.Invalid("since", "must be an event id (a non-negative integer)"))
			return
		}
	}
	f := store.EventFilter{AfterID: since, Type: q.Get("type"), Limit: limit}
	if pos, ok := s.d.Hub.Position(); ok {
		f.UpToID = pos // never past the relay's high-water mark
	} else {
		s.fail(w, r, fault.Unavailable(2*time.Second, "the event history is not ready yet; retry"))
		return
	}
	if v := q.Get("workspace_id"); v != "" {
		id, err := uuid.Parse(v)
		if err != nil {
			s.fail(w, r, fault.Invalid("workspace_id", "must be a workspace id (uuid)"))
			return
		}
		f.WorkspaceID = id.String()
	}
	evs, next, err := events.List(r.Context(), s.d.Store, auth.FromContext(r.Context()), s.d.Registry.CanTalk, f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if evs == nil {
		evs = []store.Event{}
	}
	w.Header().Set("X-Next-Since", strconv.FormatInt(next, 10))
	httpapi.WriteJSON(w, http.StatusOK, evs)
}

func (s *Server) listSecurityEvents(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r, 100, 1000)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var before int64
	if v := r.URL.Query().Get("before"); v != "" {
		if before, err = strconv.ParseInt(v, 10, 64); err != nil || before <= 0 {
			s.fail(w, r, fault.Invalid("before", "must be a security event id (a positive integer)"))
			return
		}
	}
	evs, err := s.d.Store.ListSecurityEvents(r.Context(), store.SecurityEventFilter{BeforeID: before, Limit: limit})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	type secJSON struct {
		ID          int64           `json:"id"`
		Kind        string          `json:"kind"`
		WorkspaceID string          `json:"workspace_id,omitempty"`
		Actor       string          `json:"actor"`
		ClientIP    string          `json:"client_ip"`
		Detail      json.RawMessage `json:"detail"`
		CreatedAt   time.Time       `json:"created_at"`
	}
	out := make([]secJSON, 0, len(evs))
	for _, e := range evs {
		out = append(out, secJSON{e.ID, e.Kind, e.WorkspaceID, e.Actor, e.ClientIP, e.Detail, e.CreatedAt})
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

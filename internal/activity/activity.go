// Package activity owns the activity log (SPEC §8.1): what agents report
// (POST /workspaces/:id/activity), what they tell the people watching
// (notify), and its retention together with the events table's (SPEC §8.3).
//
// It never writes history in another workspace's name: a source_id that is
// not the authenticated workspace is refused, recorded as a security event,
// and nothing reaches the log. It answers "logged" only after the row and its
// event committed. Bodies are capped with an explicit truncated flag, never
// cut silently, and invalid UTF-8 is replaced rather than failing the write.
package activity

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/agentplane/agentplane/internal/audit"
	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/fault"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/google/uuid"
)

// Types agents may report (SPEC §8.1). Other rows (cron_run, a2a_receive,
// agent_message) are written by the platform itself.
var reportable = map[string]bool{
	"a2a_send": true, "a2a_receive": true, "task_update": true, "agent_log": true,
	"skill_promotion": true, "memory_write": true, "error": true,
}

// Sources of a row.
const (
	SourceAgent  = "agent"
	SourceCanvas = "canvas"
)

// SpoofMessage is the exact refusal of a source_id naming another workspace.
const SpoofMessage = "source_id must match authenticated workspace"

// DefaultBodyMax caps request_body and response_body (bytes each).
const DefaultBodyMax = 64 << 10

// previewLen bounds previews in event payloads (SPEC §8.2).
const previewLen = 200

// Service writes and reads the activity log.
type Service struct {
	store   store.Store
	log     *slog.Logger
	audit   *audit.Recorder
	bodyMax int
}

// New returns the activity service; bodyMax ≤ 0 means DefaultBodyMax.
func New(st store.Store, log *slog.Logger, rec *audit.Recorder, bodyMax int) *Service {
	if bodyMax <= 0 {
		bodyMax = DefaultBodyMax
	}
	return &Service{store: st, log: log, audit: rec, bodyMax: bodyMax}
}

// Input is POST /workspaces/:id/activity.
type Input struct {
	ActivityType string
	Method       string
	Summary      string
	TargetID     string
	SourceID     string
	Status       string
	ErrorDetail  string
	DurationMS   int64
	RequestBody  json.RawMessage
	ResponseBody json.RawMessage
}

// capText cleans s and cuts it to max bytes at a rune boundary, reporting
// whether it was cut.
func capText(s string, max int) (string, bool) {
	s = store.CleanText(s)
	if len(s) <= max {
		return s, false
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut], true
}

// bodyText turns a JSON body (string or any JSON value) into stored text.
func bodyText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

func preview(s string) string {
	s = store.CleanText(s)
	if utf8.RuneCountInString(s) <= previewLen {
		return s
	}
	return string([]rune(s)[:previewLen]) + "…"
}

// Caller is the authenticated workspace writing to its own log.
type Caller struct {
	Principal *auth.Principal
	ClientIP  string
}

// Log stores one activity row reported by a workspace and its
// ACTIVITY_LOGGED event, in one transaction.
func (s *Service) Log(ctx context.Context, c Caller, in Input) (store.Activity, error) {
	own := c.Principal.WorkspaceID
	if in.SourceID != "" && in.SourceID != own {
		s.log.Warn("activity spoof refused", "authenticated_workspace", own, "claimed_source", audit.Quote(in.SourceID), "client_ip", audit.Quote(c.ClientIP))
		if err := s.audit.Record(ctx, audit.Event{
			Kind: audit.KindSourceSpoof, WorkspaceID: own, Actor: c.Principal.Actor(), ClientIP: c.ClientIP,
			Detail: map[string]string{"claimed_source_id": in.SourceID},
		}); err != nil {
			s.log.Warn("record security event", "err", err)
		}
		return store.Activity{}, &fault.Error{Kind: fault.KindForbidden, Field: "source_id", Msg: SpoofMessage}
	}
	if !reportable[in.ActivityType] {
		return store.Activity{}, fault.Invalid("activity_type", "must be one of a2a_send, a2a_receive, task_update, agent_log, skill_promotion, memory_write, error")
	}
	if in.DurationMS < 0 {
		return store.Activity{}, fault.Invalid("duration_ms", "must not be negative")
	}
	if in.TargetID != "" {
		if _, err := uuid.Parse(in.TargetID); err != nil {
			return store.Activity{}, fault.Invalid("target_id", "must be a workspace id (uuid)")
		}
	}
	a := store.Activity{
		ID: uuid.Must(uuid.NewV7()).String(), WorkspaceID: own, ActivityType: in.ActivityType, Source: SourceAgent,
		SourceID: own, TargetID: in.TargetID,
	}
	a.Method, _ = capText(in.Method, 200)
	a.Summary, _ = capText(in.Summary, 2000)
	a.Status, _ = capText(in.Status, 100)
	a.ErrorDetail, _ = capText(in.ErrorDetail, s.bodyMax)
	a.DurationMS = in.DurationMS
	a.RequestBody, a.RequestTruncated = capText(bodyText(in.RequestBody), s.bodyMax)
	a.ResponseBody, a.ResponseTruncated = capText(bodyText(in.ResponseBody), s.bodyMax)
	return a, s.insert(ctx, a, "ACTIVITY_LOGGED", map[string]any{"activity_id": a.ID, "type": a.ActivityType, "summary": preview(a.Summary)}, c.Principal.Actor())
}

func (s *Service) insert(ctx context.Context, a store.Activity, event string, payload map[string]any, actor string) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("activity event payload: %w", err)
	}
	return s.store.InTx(ctx, func(tx store.Tx) error {
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		a.CreatedAt = now
		if err := tx.InsertActivity(ctx, a); err != nil {
			return err
		}
		_, _, err = tx.AppendEvent(ctx, store.EventInput{
			Type: event, WorkspaceID: a.WorkspaceID, Audience: store.AudienceWorkspace, Payload: b, Actor: actor,
		})
		return err
	})
}

// Attachment is one file an agent points the people watching at.
type Attachment struct {
	URI      string `json:"uri"`
	Name     string `json:"name"`
	MimeType string `json:"mimeType,omitempty"`
	Size     *int64 `json:"size,omitempty"`
}

// Notify stores a message from the agent to the canvas and its AGENT_MESSAGE
// event. Attachments are validated element by element.
func (s *Service) Notify(ctx context.Context, c Caller, message string, atts []Attachment) (store.Activity, error) {
	if strings.TrimSpace(message) == "" {
		return store.Activity{}, fault.Invalid("message", "is required")
	}
	if len(atts) > 20 {
		return store.Activity{}, fault.Invalid("attachments", "at most 20 attachments")
	}
	for i, at := range atts {
		field := func(f string) string { return fmt.Sprintf("attachments[%d].%s", i, f) }
		u, err := url.Parse(at.URI)
		switch {
		case strings.TrimSpace(at.URI) == "":
			return store.Activity{}, fault.Invalid(field("uri"), "is required")
		case err != nil || u.Scheme == "" || len(at.URI) > 2048:
			return store.Activity{}, fault.Invalid(field("uri"), "must be an absolute URI of at most 2048 bytes")
		case strings.TrimSpace(at.Name) == "":
			return store.Activity{}, fault.Invalid(field("name"), "is required")
		case len(at.Name) > 255 || strings.ContainsAny(at.Name, "\r\n\x00"):
			return store.Activity{}, fault.Invalid(field("name"), "must be one line of at most 255 bytes")
		case len(at.MimeType) > 255 || (at.MimeType != "" && !strings.Contains(at.MimeType, "/")):
			return store.Activity{}, fault.Invalid(field("mimeType"), "must look like type/subtype")
		case at.Size != nil && *at.Size < 0:
			return store.Activity{}, fault.Invalid(field("size"), "must not be negative")
		}
	}
	own := c.Principal.WorkspaceID
	msg, truncated := capText(message, s.bodyMax)
	a := store.Activity{
		ID: uuid.Must(uuid.NewV7()).String(), WorkspaceID: own, ActivityType: "agent_message", Source: SourceAgent,
		SourceID: own, Summary: preview(msg), RequestBody: msg, RequestTruncated: truncated,
	}
	if len(atts) > 0 {
		b, err := json.Marshal(atts)
		if err != nil {
			return store.Activity{}, err
		}
		a.Attachments = json.RawMessage(store.CleanText(string(b)))
	}
	return a, s.insert(ctx, a, "AGENT_MESSAGE", map[string]any{"activity_id": a.ID, "preview": preview(msg), "attachments": len(atts)}, c.Principal.Actor())
}

// List pages through a workspace's activity, newest first.
func (s *Service) List(ctx context.Context, f store.ActivityFilter) ([]store.Activity, error) {
	if f.Type != "" && !reportable[f.Type] && f.Type != "agent_message" && f.Type != "cron_run" {
		return nil, fault.Invalid("type", "unknown activity type %s", audit.Quote(f.Type))
	}
	if f.Source != "" && f.Source != SourceAgent && f.Source != SourceCanvas {
		return nil, fault.Invalid("source", "must be agent or canvas")
	}
	return s.store.ListActivity(ctx, f)
}

package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/agentplane/agentplane/internal/audit"
	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/fault"
	"github.com/agentplane/agentplane/internal/store"
)

// Caller is an authenticated workspace call: its principal plus what the
// request claimed about identity.
type Caller struct {
	Principal *auth.Principal
	ClientIP  string
	// HeaderID is the X-Workspace-ID header, if any.
	HeaderID string
}

// CheckIdentity enforces "the token alone identifies a workspace caller": an
// id in the body (field names it) or the X-Workspace-ID header naming another
// workspace is refused with 403 and recorded; nothing else is done.
func (s *Service) CheckIdentity(ctx context.Context, c Caller, field, claimed string) error {
	own := c.Principal.WorkspaceID
	for _, claim := range []struct{ field, value string }{{field, claimed}, {"X-Workspace-ID", c.HeaderID}} {
		if claim.value == "" || claim.value == own {
			continue
		}
		if err := s.audit.Record(ctx, audit.Event{
			Kind: audit.KindWorkspaceMismatch, WorkspaceID: own, Actor: c.Principal.Actor(), ClientIP: c.ClientIP,
			Detail: map[string]string{"field": claim.field, "claimed": claim.value},
		}); err != nil {
			s.log.Warn("record security event", "err", err)
		}
		return &fault.Error{Kind: fault.KindForbidden, Field: claim.field, Msg: "does not match the workspace of the token"}
	}
	return nil
}

func gone(id string) error {
	return &fault.Error{Kind: fault.KindGone, Code: "workspace_removed", Msg: "workspace " + id + " was removed; stop this agent"}
}

// validCard checks an agent card: a JSON object of bounded size.
func validCard(field string, card json.RawMessage) error {
	if len(card) == 0 || bytes.Equal(card, []byte("null")) {
		return nil
	}
	if len(card) > maxCardBytes {
		return fault.Invalid(field, "must be at most %d bytes", maxCardBytes)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(card, &obj); err != nil {
		return fault.Invalid(field, "must be a JSON object")
	}
	return nil
}

// canonicalCard normalizes a card for storage and comparison: decoded and
// re-encoded (sorted keys, no spaces), with NUL and lone surrogates — which
// PostgreSQL's jsonb refuses — replaced by U+FFFD. A card read back from
// either back end canonicalizes to the same bytes, so "unchanged" is exact.
func canonicalCard(card json.RawMessage) json.RawMessage {
	if len(card) == 0 || bytes.Equal(card, []byte("null")) {
		return nil
	}
	var v any
	if err := json.Unmarshal(card, &v); err != nil {
		return card
	}
	out, err := json.Marshal(cleanJSON(v))
	if err != nil {
		return card
	}
	return out
}

// cleanJSON applies cleanText to every string (keys too) of a decoded value.
func cleanJSON(v any) any {
	switch x := v.(type) {
	case string:
		return store.CleanText(x)
	case []any:
		for i := range x {
			x[i] = cleanJSON(x[i])
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[store.CleanText(k)] = cleanJSON(val)
		}
		return out
	}
	return v
}

// RegisterInput is POST /registry/register.
type RegisterInput struct {
	ID        string
	URL       string
	AgentCard json.RawMessage
}

// Register records the agent's URL and card and counts as a heartbeat:
// awaiting_agent or offline → online (or degraded). A paused workspace keeps
// its status; a removed one answers 410; an unknown id is never created.
func (s *Service) Register(ctx context.Context, c Caller, in RegisterInput) (store.Workspace, error) {
	if err := s.CheckIdentity(ctx, c, "id", in.ID); err != nil {
		return store.Workspace{}, err
	}
	if in.URL == "" {
		return store.Workspace{}, fault.Invalid("url", "is required: the address agentplane reaches the agent at")
	}
	if _, err := s.urls.CheckURL(in.URL); err != nil {
		_ = s.audit.Record(ctx, audit.Event{Kind: audit.KindURLRefused, WorkspaceID: c.Principal.WorkspaceID,
			Actor: c.Principal.Actor(), ClientIP: c.ClientIP, Detail: map[string]string{"url": in.URL, "reason": err.Error()}})
		return store.Workspace{}, fault.Invalid("url", "%v", err)
	}
	if err := validCard("agent_card", in.AgentCard); err != nil {
		return store.Workspace{}, err
	}
	card := canonicalCard(in.AgentCard)
	actor := c.Principal.Actor()
	return s.update(ctx, c.Principal.WorkspaceID, func(tx store.Tx, w *store.Workspace, now time.Time) (bool, error) {
		if w.Status == store.StatusRemoved {
			return false, gone(w.ID)
		}
		before := *w
		before.AgentCard = canonicalCard(before.AgentCard)
		w.URL, w.LastHeartbeatAt, w.UpdatedBy = in.URL, now, actor
		if card != nil {
			w.AgentCard = card
		}
		if w.Status != store.StatusPaused {
			w.Status = liveStatus(w.DegradedReasons)
		}
		if ev := transitionEvent(before.Status, w.Status, before.DegradedReasons, w.DegradedReasons); ev != "" {
			if err := emit(ctx, tx, ev, *w, actor, nil); err != nil {
				return false, err
			}
		}
		if card != nil && !bytes.Equal(card, before.AgentCard) {
			if err := emit(ctx, tx, "AGENT_CARD_UPDATED", *w, actor, nil); err != nil {
				return false, err
			}
		}
		return true, nil
	})
}

// HeartbeatInput is POST /registry/heartbeat.
type HeartbeatInput struct {
	WorkspaceID   string
	ActiveTasks   int
	CurrentTask   string
	ErrorRate     float64
	SampleError   string
	UptimeSeconds int64
}

// Heartbeat records the agent's state and applies the status machine.
func (s *Service) Heartbeat(ctx context.Context, c Caller, in HeartbeatInput) (store.Workspace, error) {
	if err := s.CheckIdentity(ctx, c, "workspace_id", in.WorkspaceID); err != nil {
		return store.Workspace{}, err
	}
	switch {
	case in.ActiveTasks < 0 || in.ActiveTasks > maxActiveTasks:
		return store.Workspace{}, fault.Invalid("active_tasks", "must be between 0 and %d", maxActiveTasks)
	case in.UptimeSeconds < 0:
		return store.Workspace{}, fault.Invalid("uptime_seconds", "must not be negative")
	}
	if err := validRate("error_rate", in.ErrorRate); err != nil {
		return store.Workspace{}, err
	}
	if err := validText("current_task", in.CurrentTask, maxCurrentTaskLen); err != nil {
		return store.Workspace{}, err
	}
	sample := truncate(store.CleanText(in.SampleError), maxSampleErrorLen)
	actor := c.Principal.Actor()
	w, err := s.update(ctx, c.Principal.WorkspaceID, func(tx store.Tx, w *store.Workspace, now time.Time) (bool, error) {
		if w.Status == store.StatusRemoved {
			return false, gone(w.ID)
		}
		before := *w
		w.ActiveTasks, w.CurrentTask, w.LastErrorRate, w.LastSampleError = in.ActiveTasks, in.CurrentTask, in.ErrorRate, sample
		w.UptimeSeconds, w.LastHeartbeatAt = in.UptimeSeconds, now
		w.DegradedReasons = errorRateReason(w.DegradedReasons, in.ErrorRate)
		if w.Status != store.StatusPaused {
			w.Status = liveStatus(w.DegradedReasons)
		}
		if ev := transitionEvent(before.Status, w.Status, before.DegradedReasons, w.DegradedReasons); ev != "" {
			if err := emit(ctx, tx, ev, *w, actor, nil); err != nil {
				return false, err
			}
		}
		if before.CurrentTask != w.CurrentTask || before.ActiveTasks != w.ActiveTasks {
			if err := emit(ctx, tx, "TASK_UPDATED", *w, actor, map[string]any{"current_task": w.CurrentTask, "active_tasks": w.ActiveTasks}); err != nil {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		return w, err
	}
	if s.hub != nil {
		// inflight is the platform's own count (live capacity leases), read
		// after the commit from the read side so that a heartbeat's write
		// stays one short statement.
		inflight := 0
		if n, err := s.store.InflightCounts(ctx, []string{w.ID}, w.LastHeartbeatAt); err == nil {
			inflight = n[w.ID]
		}
		s.hub.PublishEphemeral(store.Event{
			Type: "WORKSPACE_HEARTBEAT", WorkspaceID: w.ID, Audience: store.AudienceReachable, Actor: actor,
			Payload: mustJSON(map[string]any{"active_tasks": w.ActiveTasks, "inflight": inflight}),
		})
	}
	return w, nil
}

// UpdateCard replaces the agent card.
func (s *Service) UpdateCard(ctx context.Context, c Caller, id string, card json.RawMessage) (store.Workspace, error) {
	if err := s.CheckIdentity(ctx, c, "workspace_id", id); err != nil {
		return store.Workspace{}, err
	}
	if len(card) == 0 || bytes.Equal(card, []byte("null")) {
		return store.Workspace{}, fault.Invalid("agent_card", "is required")
	}
	if err := validCard("agent_card", card); err != nil {
		return store.Workspace{}, err
	}
	card = canonicalCard(card)
	actor := c.Principal.Actor()
	return s.update(ctx, c.Principal.WorkspaceID, func(tx store.Tx, w *store.Workspace, now time.Time) (bool, error) {
		if w.Status == store.StatusRemoved {
			return false, gone(w.ID)
		}
		if bytes.Equal(card, canonicalCard(w.AgentCard)) {
			return false, nil
		}
		w.AgentCard, w.UpdatedBy = card, actor
		return true, emit(ctx, tx, "AGENT_CARD_UPDATED", *w, actor, nil)
	})
}

// hierarchy returns the cached parent map, reloaded when the stored version
// moved (one small read per call, so every replica sees re-parenting at once).
func (s *Service) hierarchy(ctx context.Context) (map[string]string, map[string]string, error) {
	v, err := s.store.HierarchyVersion(ctx)
	if err != nil {
		return nil, nil, err
	}
	s.hierMu.Lock()
	defer s.hierMu.Unlock()
	if s.hierParent != nil && v == s.hierVersion {
		return s.hierParent, s.hierNames, nil
	}
	nodes, version, err := s.store.Hierarchy(ctx)
	if err != nil {
		return nil, nil, err
	}
	parent, names := make(map[string]string, len(nodes)), make(map[string]string, len(nodes))
	for _, n := range nodes {
		parent[n.ID], names[n.ID] = n.ParentID, n.Name
	}
	s.hierParent, s.hierNames, s.hierVersion = parent, names, version
	return parent, names, nil
}

// CanTalk applies the hierarchy rule (SPEC §7.2) between two live workspaces.
func (s *Service) CanTalk(ctx context.Context, caller, target string) (bool, error) {
	parent, _, err := s.hierarchy(ctx)
	if err != nil {
		return false, err
	}
	return canTalk(parent, caller, target), nil
}

// Discover answers GET /registry/discover/:id for a workspace caller.
func (s *Service) Discover(ctx context.Context, c Caller, target string) (store.Workspace, error) {
	w, err := s.store.GetWorkspace(ctx, target)
	if errors.Is(err, store.ErrNotFound) || (err == nil && w.Status == store.StatusRemoved) {
		return w, fault.NotFound("workspace " + target)
	}
	if err != nil {
		return w, err
	}
	ok, err := s.CanTalk(ctx, c.Principal.WorkspaceID, target)
	if err != nil {
		return w, err
	}
	if !ok {
		return w, fault.Forbidden("workspace %s may not talk to %s", c.Principal.WorkspaceID, target)
	}
	return w, nil
}

// Peer is one entry of GET /registry/:id/peers.
type Peer struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Role     string `json:"role"`
	URL      string `json:"url"`
	Status   string `json:"status"`
	ParentID string `json:"parent_id,omitempty"`
}

// Peers lists the workspaces id may talk to (itself excluded).
func (s *Service) Peers(ctx context.Context, id string) ([]Peer, error) {
	parent, _, err := s.hierarchy(ctx)
	if err != nil {
		return nil, err
	}
	if _, ok := parent[id]; !ok {
		return nil, fault.NotFound("workspace " + id)
	}
	out := []Peer{}
	for other := range parent {
		if other == id || !canTalk(parent, id, other) {
			continue
		}
		w, err := s.store.GetWorkspace(ctx, other)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if w.Status == store.StatusRemoved {
			continue
		}
		out = append(out, Peer{ID: w.ID, Name: w.Name, Role: w.Role, URL: w.URL, Status: w.Status, ParentID: w.ParentID})
	}
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// CheckAccess answers POST /registry/check-access. A workspace may only ask
// about itself as the caller.
func (s *Service) CheckAccess(ctx context.Context, p *auth.Principal, clientIP, headerID, callerID, targetID string) (bool, error) {
	if p.Kind == auth.KindWorkspace {
		if err := s.CheckIdentity(ctx, Caller{Principal: p, ClientIP: clientIP, HeaderID: headerID}, "caller_id", callerID); err != nil {
			return false, err
		}
	}
	return s.CanTalk(ctx, callerID, targetID)
}

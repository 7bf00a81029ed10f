package registry

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/agentplane/agentplane/internal/audit"
	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/clock"
	"github.com/agentplane/agentplane/internal/events"
	"github.com/agentplane/agentplane/internal/fault"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/google/uuid"
)

// URLChecker validates agent URLs (the netguard's CheckURL).
type URLChecker interface {
	CheckURL(raw string) (*url.URL, error)
}

// Options configure the service.
type Options struct {
	Store        store.Store
	Clock        clock.Clock
	Log          *slog.Logger
	Audit        *audit.Recorder
	Hub          *events.Hub
	URLs         URLChecker
	HeartbeatTTL time.Duration
}

// Service implements the registry.
type Service struct {
	store store.Store
	clock clock.Clock
	log   *slog.Logger
	audit *audit.Recorder
	hub   *events.Hub
	urls  URLChecker
	ttl   time.Duration

	hierMu      sync.Mutex
	hierVersion int64
	hierParent  map[string]string
	hierNames   map[string]string
}

// New returns the registry service.
func New(o Options) *Service {
	return &Service{store: o.Store, clock: o.Clock, log: o.Log, audit: o.Audit, hub: o.Hub, urls: o.URLs, ttl: o.HeartbeatTTL}
}

// HeartbeatInterval is what agents are told to beat at: a third of the TTL.
func (s *Service) HeartbeatInterval() time.Duration { return s.ttl / 3 }

// casRetries bounds optimistic-concurrency retries of one operation.
const casRetries = 5

// errRetry asks update to re-read and try again.
var errRetry = errors.New("version changed; retry")

// update reads workspace id, lets fn change it (and append events), and
// writes it with a compare-and-swap, retrying when another writer won. fn
// returns (false, nil) to leave the row unchanged.
func (s *Service) update(ctx context.Context, id string, fn func(tx store.Tx, w *store.Workspace, now time.Time) (bool, error)) (store.Workspace, error) {
	var out store.Workspace
	for attempt := 0; attempt < casRetries; attempt++ {
		err := s.store.InTx(ctx, func(tx store.Tx) error {
			w, err := tx.GetWorkspace(ctx, id)
			if err != nil {
				return err
			}
			now, err := tx.Now(ctx)
			if err != nil {
				return err
			}
			changed, err := fn(tx, &w, now)
			if err != nil || !changed {
				out = w
				return err
			}
			w.UpdatedAt = now
			ok, err := tx.UpdateWorkspace(ctx, w)
			if err != nil {
				return err
			}
			if !ok {
				return errRetry
			}
			w.Version++
			out = w
			return nil
		})
		if errors.Is(err, errRetry) {
			continue
		}
		if errors.Is(err, store.ErrNotFound) {
			return out, fault.NotFound("workspace " + id)
		}
		return out, err
	}
	return out, fault.Unavailable(time.Second, "workspace %s is being changed concurrently; retry", id)
}

// emit appends an event about w. The dedupe key ties a status transition to
// the version that made it, so a transition yields one event across replicas.
func emit(ctx context.Context, tx store.Tx, typ string, w store.Workspace, actor string, extra map[string]any) error {
	payload := map[string]any{"name": w.Name, "status": w.Status}
	if w.Status == store.StatusDegraded || typ == "WORKSPACE_DEGRADED" {
		reasons := w.DegradedReasons
		if reasons == nil {
			reasons = []string{}
		}
		payload["reasons"] = reasons
	}
	for k, v := range extra {
		payload[k] = v
	}
	b, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	in := store.EventInput{Type: typ, WorkspaceID: w.ID, Audience: store.AudienceReachable, Payload: b, Actor: actor}
	switch typ {
	case "WORKSPACE_ONLINE", "WORKSPACE_DEGRADED", "WORKSPACE_OFFLINE", "WORKSPACE_PAUSED", "WORKSPACE_RESUMED", "WORKSPACE_REMOVED":
		in.DedupeKey = fmt.Sprintf("ws:%s:v%d:%s", w.ID, w.Version+1, typ)
	}
	_, _, err = tx.AppendEvent(ctx, in)
	return err
}

// CreateInput is POST /workspaces.
type CreateInput struct {
	Name               string
	Role               string
	ParentID           string
	MaxConcurrentTasks *int
	URL                string
}

// Created is the result of Create; Token is shown once.
type Created struct {
	Workspace store.Workspace
	Token     string
}

func newSecret() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

func (s *Service) checkURL(raw string) error {
	if raw == "" {
		return nil
	}
	if _, err := s.urls.CheckURL(raw); err != nil {
		return fault.Invalid("url", "%v", err)
	}
	return nil
}

// Create makes a workspace (status awaiting_agent) and its first token.
func (s *Service) Create(ctx context.Context, actor string, in CreateInput) (Created, error) {
	in.Name = strings.TrimSpace(in.Name)
	if err := validName("name", in.Name); err != nil {
		return Created{}, err
	}
	if err := validText("role", in.Role, maxRoleLen); err != nil {
		return Created{}, err
	}
	maxTasks := 1
	if in.MaxConcurrentTasks != nil {
		maxTasks = *in.MaxConcurrentTasks
		if maxTasks < 1 || maxTasks > maxConcurrency {
			return Created{}, fault.Invalid("max_concurrent_tasks", "must be between 1 and %d", maxConcurrency)
		}
	}
	if in.ParentID != "" {
		if _, err := uuid.Parse(in.ParentID); err != nil {
			return Created{}, fault.Invalid("parent_id", "must be a workspace id (uuid)")
		}
	}
	if err := s.checkURL(in.URL); err != nil {
		return Created{}, err
	}
	plain, hash, prefix := auth.NewToken(auth.WorkspacePrefix)
	var out store.Workspace
	err := s.store.InTx(ctx, func(tx store.Tx) error {
		// Lock before checking the parent: a concurrent removal of the parent
		// must either finish first (and we refuse) or wait for us (and see
		// the child).
		if err := tx.LockHierarchy(ctx); err != nil {
			return err
		}
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		if in.ParentID != "" {
			p, err := tx.GetWorkspace(ctx, in.ParentID)
			if errors.Is(err, store.ErrNotFound) || (err == nil && p.Status == store.StatusRemoved) {
				return fault.Invalid("parent_id", "workspace %s does not exist", in.ParentID)
			}
			if err != nil {
				return err
			}
		}
		out = store.Workspace{
			ID: uuid.Must(uuid.NewV7()).String(), Name: in.Name, Role: in.Role, ParentID: in.ParentID, URL: in.URL,
			Status: store.StatusAwaitingAgent, MaxConcurrentTasks: maxTasks, OutboundSecret: newSecret(),
			Version: 1, CreatedAt: now, UpdatedAt: now, UpdatedBy: actor,
		}
		if err := tx.InsertWorkspace(ctx, out); err != nil {
			return err
		}
		if _, err := tx.InsertToken(ctx, store.Token{
			ID: uuid.Must(uuid.NewV7()).String(), Kind: store.TokenWorkspace, WorkspaceID: out.ID,
			Hash: hash, Prefix: prefix, CreatedAt: now, CreatedBy: actor,
		}); err != nil {
			return err
		}
		if err := tx.BumpHierarchyVersion(ctx); err != nil {
			return err
		}
		_, _, err = tx.AppendEvent(ctx, store.EventInput{
			Type: "WORKSPACE_CREATED", WorkspaceID: out.ID, Audience: store.AudienceReachable, Actor: actor,
			Payload: mustJSON(map[string]any{"name": out.Name, "status": out.Status, "parent_id": out.ParentID}),
		})
		return err
	})
	if err != nil {
		return Created{}, err
	}
	return Created{Workspace: out, Token: plain}, nil
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with maps of plain values
	}
	return b
}

// Get returns one workspace.
func (s *Service) Get(ctx context.Context, id string) (store.Workspace, error) {
	w, err := s.store.GetWorkspace(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return w, fault.NotFound("workspace " + id)
	}
	return w, err
}

// List pages through workspaces.
func (s *Service) List(ctx context.Context, f store.WorkspaceFilter) ([]store.Workspace, error) {
	return s.store.ListWorkspaces(ctx, f)
}

// Inflight counts the platform's own in-flight work per workspace: live
// capacity leases of gateway calls and cron runs (SPEC §7.3), by store time.
func (s *Service) Inflight(ctx context.Context, ids []string) (map[string]int, error) {
	now, err := s.store.Now(ctx)
	if err != nil {
		return nil, err
	}
	return s.store.InflightCounts(ctx, ids, now)
}

// PatchInput is PATCH /workspaces/:id; nil fields are left alone. ParentID
// set to "" makes the workspace a root.
type PatchInput struct {
	Name               *string
	Role               *string
	ParentID           *string
	MaxConcurrentTasks *int
	URL                *string
}

// Patch changes a workspace. Only admins may change parent_id,
// max_concurrent_tasks and url; a workspace may rename itself and change its
// role. A field the caller may not change is refused (403), never ignored.
func (s *Service) Patch(ctx context.Context, p *auth.Principal, id string, in PatchInput) (store.Workspace, error) {
	if p.Kind != auth.KindAdmin {
		for field, set := range map[string]bool{"parent_id": in.ParentID != nil, "max_concurrent_tasks": in.MaxConcurrentTasks != nil, "url": in.URL != nil} {
			if set {
				return store.Workspace{}, &fault.Error{Kind: fault.KindForbidden, Field: field, Msg: "only an admin may change this field"}
			}
		}
	}
	if in.Name != nil {
		trimmed := strings.TrimSpace(*in.Name)
		in.Name = &trimmed
		if err := validName("name", *in.Name); err != nil {
			return store.Workspace{}, err
		}
	}
	if in.Role != nil {
		if err := validText("role", *in.Role, maxRoleLen); err != nil {
			return store.Workspace{}, err
		}
	}
	if in.MaxConcurrentTasks != nil && (*in.MaxConcurrentTasks < 1 || *in.MaxConcurrentTasks > maxConcurrency) {
		return store.Workspace{}, fault.Invalid("max_concurrent_tasks", "must be between 1 and %d", maxConcurrency)
	}
	if in.URL != nil {
		if err := s.checkURL(*in.URL); err != nil {
			return store.Workspace{}, err
		}
	}
	if in.ParentID != nil && *in.ParentID != "" {
		if _, err := uuid.Parse(*in.ParentID); err != nil {
			return store.Workspace{}, fault.Invalid("parent_id", "must be a workspace id (uuid) or null")
		}
		if *in.ParentID == id {
			return store.Workspace{}, fault.Invalid("parent_id", "a workspace cannot be its own parent")
		}
	}
	return s.update(ctx, id, func(tx store.Tx, w *store.Workspace, now time.Time) (bool, error) {
		if w.Status == store.StatusRemoved {
			return false, &fault.Error{Kind: fault.KindGone, Msg: "workspace " + id + " was removed"}
		}
		var changed []string
		if in.Name != nil && *in.Name != w.Name {
			w.Name, changed = *in.Name, append(changed, "name")
		}
		if in.Role != nil && *in.Role != w.Role {
			w.Role, changed = *in.Role, append(changed, "role")
		}
		if in.MaxConcurrentTasks != nil && *in.MaxConcurrentTasks != w.MaxConcurrentTasks {
			w.MaxConcurrentTasks, changed = *in.MaxConcurrentTasks, append(changed, "max_concurrent_tasks")
		}
		if in.URL != nil && *in.URL != w.URL {
			w.URL, changed = *in.URL, append(changed, "url")
		}
		if in.ParentID != nil && *in.ParentID != w.ParentID {
			// Two concurrent re-parents must not both pass the cycle check.
			if err := tx.LockHierarchy(ctx); err != nil {
				return false, err
			}
			if *in.ParentID != "" {
				nodes, _, err := tx.Hierarchy(ctx)
				if err != nil {
					return false, err
				}
				found := false
				for _, n := range nodes {
					found = found || n.ID == *in.ParentID
				}
				if !found {
					return false, fault.Invalid("parent_id", "workspace %s does not exist", *in.ParentID)
				}
				for _, d := range descendants(nodes, id) {
					if d == *in.ParentID {
						return false, fault.Invalid("parent_id", "would create a cycle: %s is a descendant of %s", d, id)
					}
				}
			}
			if err := tx.BumpHierarchyVersion(ctx); err != nil {
				return false, err
			}
			w.ParentID, changed = *in.ParentID, append(changed, "parent_id")
		}
		if len(changed) == 0 {
			return false, nil
		}
		w.UpdatedBy = p.Actor()
		return true, emit(ctx, tx, "WORKSPACE_UPDATED", *w, p.Actor(), map[string]any{"changed": changed})
	})
}

// Child is a workspace listed in a confirmation_required answer.
type Child struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Delete removes a workspace: status removed (terminal), tokens revoked,
// WORKSPACE_REMOVED. With live descendants it answers 409
// confirmation_required listing them, unless confirm is set, which removes
// the whole subtree.
func (s *Service) Delete(ctx context.Context, actor, id string, confirm bool) ([]string, error) {
	var removed []string
	err := s.retry(ctx, func(tx store.Tx) error {
		removed = nil
		if err := tx.LockHierarchy(ctx); err != nil {
			return err
		}
		w, err := tx.GetWorkspace(ctx, id)
		if err != nil {
			return err
		}
		if w.Status == store.StatusRemoved {
			return nil // already gone: deleting again changes nothing
		}
		nodes, _, err := tx.Hierarchy(ctx)
		if err != nil {
			return err
		}
		desc := descendants(nodes, id)
		if len(desc) > 0 && !confirm {
			names := map[string]string{}
			for _, n := range nodes {
				names[n.ID] = n.Name
			}
			children := make([]Child, 0, len(desc))
			for _, d := range desc {
				children = append(children, Child{ID: d, Name: names[d]})
			}
			return &fault.Error{Kind: fault.KindConflict, Code: "confirmation_required",
				Msg:     fmt.Sprintf("workspace has %d descendant(s); repeat with ?confirm=true to remove them too", len(desc)),
				Details: map[string]any{"children": children}}
		}
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		// Children first, so no live workspace ever points at a removed parent.
		for i := len(desc) - 1; i >= -1; i-- {
			target := id
			if i >= 0 {
				target = desc[i]
			}
			cur, err := tx.GetWorkspace(ctx, target)
			if err != nil {
				return err
			}
			if err := emit(ctx, tx, "WORKSPACE_REMOVED", withStatus(cur, store.StatusRemoved), actor, nil); err != nil {
				return err
			}
			cur.Status, cur.DegradedReasons, cur.UpdatedAt, cur.UpdatedBy = store.StatusRemoved, nil, now, actor
			ok, err := tx.UpdateWorkspace(ctx, cur)
			if err != nil {
				return err
			}
			if !ok {
				return errRetry
			}
			if err := tx.RevokeWorkspaceTokens(ctx, target, now); err != nil {
				return err
			}
			removed = append(removed, target)
		}
		return tx.BumpHierarchyVersion(ctx)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, fault.NotFound("workspace " + id)
	}
	if errors.Is(err, errRetry) {
		return nil, fault.Unavailable(time.Second, "workspace %s is being changed concurrently; retry", id)
	}
	return removed, err
}

// retry runs fn in a transaction again (bounded) when a compare-and-swap
// inside it lost to a concurrent writer, e.g. a heartbeat in the subtree.
func (s *Service) retry(ctx context.Context, fn func(tx store.Tx) error) error {
	var err error
	for attempt := 0; attempt < casRetries; attempt++ {
		err = s.store.InTx(ctx, fn)
		if !errors.Is(err, errRetry) {
			return err
		}
	}
	return err
}

func withStatus(w store.Workspace, status string) store.Workspace {
	w.Status = status
	return w
}

// Pause pauses a workspace and, in cascade, its live descendants; each
// remembers who paused it so that Resume undoes exactly that cascade.
func (s *Service) Pause(ctx context.Context, actor, id string) error {
	return s.cascade(ctx, actor, id, func(w *store.Workspace, isRoot bool) bool {
		if w.Status == store.StatusPaused || w.Status == store.StatusRemoved {
			return false
		}
		w.Status, w.PauseOrigin = store.StatusPaused, id
		return true
	}, func(w store.Workspace) error {
		if w.Status == store.StatusRemoved {
			return &fault.Error{Kind: fault.KindGone, Msg: "workspace " + id + " was removed"}
		}
		return nil
	})
}

// Resume resumes a paused workspace and the descendants its pause cascaded
// to. They become offline until their next heartbeat.
func (s *Service) Resume(ctx context.Context, actor, id string) error {
	return s.cascade(ctx, actor, id, func(w *store.Workspace, isRoot bool) bool {
		if w.Status != store.StatusPaused || (!isRoot && w.PauseOrigin != id) {
			return false
		}
		w.Status, w.PauseOrigin = store.StatusOffline, ""
		return true
	}, func(w store.Workspace) error {
		switch w.Status {
		case store.StatusRemoved:
			return &fault.Error{Kind: fault.KindGone, Msg: "workspace " + id + " was removed"}
		case store.StatusPaused:
			return nil
		}
		return fault.Conflict("not_paused", "workspace %s is %s, not paused", id, w.Status)
	})
}

// cascade applies change to id and its descendants in one transaction.
func (s *Service) cascade(ctx context.Context, actor, id string, change func(w *store.Workspace, isRoot bool) bool, precheck func(store.Workspace) error) error {
	err := s.retry(ctx, func(tx store.Tx) error {
		if err := tx.LockHierarchy(ctx); err != nil {
			return err
		}
		root, err := tx.GetWorkspace(ctx, id)
		if err != nil {
			return err
		}
		if err := precheck(root); err != nil {
			return err
		}
		nodes, _, err := tx.Hierarchy(ctx)
		if err != nil {
			return err
		}
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		for i, target := range append([]string{id}, descendants(nodes, id)...) {
			w, err := tx.GetWorkspace(ctx, target)
			if err != nil {
				return err
			}
			before := w
			if !change(&w, i == 0) {
				continue
			}
			w.UpdatedAt, w.UpdatedBy = now, actor
			if ev := transitionEvent(before.Status, w.Status, before.DegradedReasons, w.DegradedReasons); ev != "" {
				if err := emit(ctx, tx, ev, w, actor, nil); err != nil {
					return err
				}
			}
			ok, err := tx.UpdateWorkspace(ctx, w)
			if err != nil {
				return err
			}
			if !ok {
				return errRetry
			}
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return fault.NotFound("workspace " + id)
	}
	if errors.Is(err, errRetry) {
		return fault.Unavailable(time.Second, "workspace %s is being changed concurrently; retry", id)
	}
	return err
}

// MintToken creates another token for a live workspace.
func (s *Service) MintToken(ctx context.Context, actor, id string) (string, store.Token, error) {
	plain, hash, prefix := auth.NewToken(auth.WorkspacePrefix)
	var tok store.Token
	err := s.store.InTx(ctx, func(tx store.Tx) error {
		w, err := tx.GetWorkspace(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return fault.NotFound("workspace " + id)
		}
		if err != nil {
			return err
		}
		if w.Status == store.StatusRemoved {
			return &fault.Error{Kind: fault.KindGone, Msg: "workspace " + id + " was removed"}
		}
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		tok = store.Token{ID: uuid.Must(uuid.NewV7()).String(), Kind: store.TokenWorkspace, WorkspaceID: id, Hash: hash, Prefix: prefix, CreatedAt: now, CreatedBy: actor}
		_, err = tx.InsertToken(ctx, tok)
		return err
	})
	return plain, tok, err
}

// ListTokens lists a workspace's tokens (never their values).
func (s *Service) ListTokens(ctx context.Context, id string, f store.TokenFilter) ([]store.Token, error) {
	if _, err := s.Get(ctx, id); err != nil {
		return nil, err
	}
	f.Kind, f.WorkspaceID = store.TokenWorkspace, id
	return s.store.ListTokens(ctx, f)
}

// RevokeToken revokes one of a workspace's tokens.
func (s *Service) RevokeToken(ctx context.Context, id, tokenID string) error {
	err := s.store.InTx(ctx, func(tx store.Tx) error {
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		return tx.RevokeToken(ctx, tokenID, store.TokenWorkspace, id, now)
	})
	if errors.Is(err, store.ErrNotFound) {
		return fault.NotFound("active token " + tokenID + " of workspace " + id)
	}
	return err
}

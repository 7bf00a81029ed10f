package events

import (
	"context"

	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/store"
)

// CanTalk answers the hierarchy rule (SPEC §7.2); the registry provides it.
type CanTalk func(ctx context.Context, caller, target string) (bool, error)

// Visible applies the event catalogue's audience (SPEC §8.2) to a caller:
// admins see everything; a workspace sees events about itself with the
// "workspace" audience and events about any workspace it may talk to with
// the "reachable" audience; admin-only events never reach a workspace.
func Visible(ctx context.Context, ev store.Event, p *auth.Principal, canTalk CanTalk) (bool, error) {
	if p == nil {
		return false, nil
	}
	if p.Kind == auth.KindAdmin {
		return true, nil
	}
	if p.Kind != auth.KindWorkspace {
		return false, nil
	}
	switch ev.Audience {
	case store.AudienceWorkspace:
		return ev.WorkspaceID == p.WorkspaceID, nil
	case store.AudienceReachable:
		if ev.WorkspaceID == p.WorkspaceID {
			return true, nil
		}
		if ev.WorkspaceID == "" {
			return false, nil
		}
		return canTalk(ctx, p.WorkspaceID, ev.WorkspaceID)
	}
	return false, nil
}

// maxScan bounds how many stored events one listing may look at to fill a
// page for a workspace caller (most events may be invisible to it).
const maxScan = 10_000

// List returns up to f.Limit events after f.AfterID that p may see, oldest
// first. It also returns the id the caller should resume after (the last id
// examined), so that a page emptied by visibility still advances.
func List(ctx context.Context, st store.Store, p *auth.Principal, canTalk CanTalk, f store.EventFilter) ([]store.Event, int64, error) {
	limit := f.Limit
	out := make([]store.Event, 0, limit)
	next := f.AfterID
	scanned := 0
	for len(out) < limit && scanned < maxScan {
		f.AfterID = next
		f.Limit = limit
		batch, err := st.ListEvents(ctx, f)
		if err != nil {
			return nil, next, err
		}
		for _, ev := range batch {
			next = ev.ID
			scanned++
			ok, err := Visible(ctx, ev, p, canTalk)
			if err != nil {
				return nil, next, err
			}
			if ok {
				out = append(out, ev)
				if len(out) == limit {
					break
				}
			}
		}
		if len(batch) < limit {
			break
		}
	}
	return out, next, nil
}

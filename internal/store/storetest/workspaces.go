package storetest

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func newID() string { return uuid.Must(uuid.NewV7()).String() }

func (b *testBundle) insertWorkspace(t *testing.T, mutate func(*store.Workspace)) store.Workspace {
	t.Helper()
	now := b.clock.Now().Truncate(time.Millisecond).UTC()
	w := store.Workspace{
		ID: newID(), Name: "Security Auditor", Role: "audits", Status: store.StatusAwaitingAgent,
		MaxConcurrentTasks: 1, OutboundSecret: []byte("0123456789abcdef0123456789abcdef"),
		CreatedAt: now, UpdatedAt: now, UpdatedBy: "admin:test",
	}
	if mutate != nil {
		mutate(&w)
	}
	require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error { return tx.InsertWorkspace(b.ctx, w) }))
	got, err := b.store.GetWorkspace(b.ctx, w.ID)
	require.NoError(t, err)
	return got
}

func (b *testBundle) update(t *testing.T, w store.Workspace) bool {
	t.Helper()
	var ok bool
	require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error {
		var err error
		ok, err = tx.UpdateWorkspace(b.ctx, w)
		return err
	}))
	return ok
}

func (b *testBundle) insertToken(t *testing.T, tok store.Token) bool {
	t.Helper()
	if tok.ID == "" {
		tok.ID = newID()
	}
	if tok.CreatedAt.IsZero() {
		tok.CreatedAt = b.clock.Now()
	}
	var ok bool
	require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error {
		var err error
		ok, err = tx.InsertToken(b.ctx, tok)
		return err
	}))
	return ok
}

func hashOf(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func runWorkspaces(t *testing.T, open Opener) {
	t.Run("WorkspaceRoundTrip", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		parent := b.insertWorkspace(t, nil)
		hb := b.clock.Now().Add(-time.Minute).Truncate(time.Millisecond).UTC()
		w := b.insertWorkspace(t, func(w *store.Workspace) {
			w.ParentID = parent.ID
			w.URL = "http://127.0.0.1:9000"
			w.AgentCard = json.RawMessage(`{"name":"auditor","skills":[]}`)
			w.Status = store.StatusDegraded
			w.DegradedReasons = []string{"agent_card_unreachable", "error_rate"}
			w.ActiveTasks, w.MaxConcurrentTasks, w.CurrentTask = 2, 4, "scanning"
			w.LastHeartbeatAt, w.LastErrorRate, w.LastSampleError = hb, 0.75, "timeout"
			w.UptimeSeconds, w.ProbeFailures, w.PauseOrigin = 3600, 2, ""
		})
		require.Equal(t, parent.ID, w.ParentID)
		require.Equal(t, "http://127.0.0.1:9000", w.URL)
		require.JSONEq(t, `{"name":"auditor","skills":[]}`, string(w.AgentCard))
		require.Equal(t, []string{"agent_card_unreachable", "error_rate"}, w.DegradedReasons)
		require.Equal(t, hb, w.LastHeartbeatAt)
		require.Equal(t, 0.75, w.LastErrorRate)
		require.EqualValues(t, 3600, w.UptimeSeconds)
		require.EqualValues(t, 1, w.Version)
		require.Equal(t, []byte("0123456789abcdef0123456789abcdef"), w.OutboundSecret)
		require.Equal(t, b.clock.Now().Truncate(time.Millisecond).UTC(), w.CreatedAt)
		require.Empty(t, parent.ParentID)
		require.Nil(t, parent.AgentCard)
		require.Nil(t, parent.DegradedReasons)
		require.True(t, parent.LastHeartbeatAt.IsZero())

		_, err := b.store.GetWorkspace(b.ctx, newID())
		require.ErrorIs(t, err, store.ErrNotFound)
		_, err = b.store.GetWorkspace(b.ctx, "not-a-uuid")
		require.ErrorIs(t, err, store.ErrNotFound)
		err = b.store.InTx(b.ctx, func(tx store.Tx) error { return tx.InsertWorkspace(b.ctx, w) })
		require.ErrorIs(t, err, store.ErrConflict)
	})

	t.Run("UpdateIsCompareAndSwap", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		w := b.insertWorkspace(t, nil)
		first, second := w, w
		first.Status = store.StatusOnline
		second.Status = store.StatusOffline
		require.True(t, b.update(t, first))
		require.False(t, b.update(t, second), "stale version loses")
		got, err := b.store.GetWorkspace(b.ctx, w.ID)
		require.NoError(t, err)
		require.Equal(t, store.StatusOnline, got.Status)
		require.EqualValues(t, 2, got.Version)
		got.Name, got.DegradedReasons, got.AgentCard = "Renamed", []string{"error_rate"}, json.RawMessage(`{"v":2}`)
		got.LastHeartbeatAt = b.clock.Now().Truncate(time.Millisecond).UTC()
		require.True(t, b.update(t, got))
		again, err := b.store.GetWorkspace(b.ctx, w.ID)
		require.NoError(t, err)
		require.Equal(t, "Renamed", again.Name)
		require.Equal(t, []string{"error_rate"}, again.DegradedReasons)
		require.Equal(t, got.LastHeartbeatAt, again.LastHeartbeatAt)
	})

	t.Run("ListWorkspacesPagesAndHidesRemoved", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		var ids []string
		for i := 0; i < 5; i++ {
			ids = append(ids, b.insertWorkspace(t, nil).ID)
		}
		removed := b.insertWorkspace(t, func(w *store.Workspace) { w.Status = store.StatusRemoved })
		page1, err := b.store.ListWorkspaces(b.ctx, store.WorkspaceFilter{Limit: 3})
		require.NoError(t, err)
		require.Len(t, page1, 3)
		page2, err := b.store.ListWorkspaces(b.ctx, store.WorkspaceFilter{Limit: 3, AfterID: page1[2].ID})
		require.NoError(t, err)
		require.Len(t, page2, 2)
		var got []string
		for _, w := range append(page1, page2...) {
			got = append(got, w.ID)
		}
		require.Equal(t, ids, got)
		all, err := b.store.ListWorkspaces(b.ctx, store.WorkspaceFilter{IncludeRemoved: true})
		require.NoError(t, err)
		require.Len(t, all, 6)
		require.Equal(t, removed.ID, all[5].ID)
	})

	t.Run("HierarchyAndVersion", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		root := b.insertWorkspace(t, nil)
		child := b.insertWorkspace(t, func(w *store.Workspace) { w.ParentID = root.ID })
		b.insertWorkspace(t, func(w *store.Workspace) { w.Status = store.StatusRemoved })
		nodes, v1, err := b.store.Hierarchy(b.ctx)
		require.NoError(t, err)
		require.Len(t, nodes, 2)
		parents := map[string]string{}
		for _, n := range nodes {
			parents[n.ID] = n.ParentID
		}
		require.Equal(t, map[string]string{root.ID: "", child.ID: root.ID}, parents)
		require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error { return tx.BumpHierarchyVersion(b.ctx) }))
		v2, err := b.store.HierarchyVersion(b.ctx)
		require.NoError(t, err)
		require.Equal(t, v1+1, v2)
	})

	t.Run("ExpiredHeartbeatsAndOldest", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		now := b.clock.Now().Truncate(time.Millisecond).UTC()
		old := b.insertWorkspace(t, func(w *store.Workspace) { w.Status = store.StatusOnline; w.LastHeartbeatAt = now.Add(-2 * time.Minute) })
		b.insertWorkspace(t, func(w *store.Workspace) {
			w.Status = store.StatusDegraded
			w.LastHeartbeatAt = now.Add(-30 * time.Second)
		})
		b.insertWorkspace(t, func(w *store.Workspace) { w.Status = store.StatusPaused; w.LastHeartbeatAt = now.Add(-time.Hour) })
		b.insertWorkspace(t, func(w *store.Workspace) { w.Status = store.StatusOffline; w.LastHeartbeatAt = now.Add(-time.Hour) })
		expired, err := b.store.ExpiredHeartbeats(b.ctx, now.Add(-90*time.Second), 10)
		require.NoError(t, err)
		require.Len(t, expired, 1)
		require.Equal(t, old.ID, expired[0].ID)
		oldest, err := b.store.OldestHeartbeat(b.ctx)
		require.NoError(t, err)
		require.Equal(t, now.Add(-2*time.Minute), oldest)
	})

	t.Run("ProbeTargets", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		a := b.insertWorkspace(t, func(w *store.Workspace) { w.Status = store.StatusOnline; w.URL = "http://a" })
		b.insertWorkspace(t, func(w *store.Workspace) { w.Status = store.StatusOnline })
		c := b.insertWorkspace(t, func(w *store.Workspace) { w.Status = store.StatusDegraded; w.URL = "http://c" })
		b.insertWorkspace(t, func(w *store.Workspace) { w.Status = store.StatusOffline; w.URL = "http://d" })
		got, err := b.store.ProbeTargets(b.ctx, "", 1)
		require.NoError(t, err)
		require.Equal(t, a.ID, got[0].ID)
		got, err = b.store.ProbeTargets(b.ctx, a.ID, 10)
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, c.ID, got[0].ID)
	})

	t.Run("TokenLifecycle", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		ws := b.insertWorkspace(t, nil)
		now := b.clock.Now().Truncate(time.Millisecond).UTC()
		wt := store.Token{ID: newID(), Kind: store.TokenWorkspace, WorkspaceID: ws.ID, Hash: hashOf("apw_one"), Prefix: "apw_one", CreatedAt: now, CreatedBy: "admin:x"}
		require.True(t, b.insertToken(t, wt))
		require.False(t, b.insertToken(t, store.Token{Kind: store.TokenWorkspace, WorkspaceID: ws.ID, Hash: hashOf("apw_one"), Prefix: "p"}), "duplicate hash")

		l, err := b.store.TokenByHash(b.ctx, hashOf("apw_one"))
		require.NoError(t, err)
		require.Equal(t, wt.ID, l.ID)
		require.Equal(t, ws.ID, l.WorkspaceID)
		require.Equal(t, store.StatusAwaitingAgent, l.WorkspaceStatus)
		require.Equal(t, now, l.CreatedAt)
		require.True(t, l.RevokedAt.IsZero())
		_, err = b.store.TokenByHash(b.ctx, hashOf("nope"))
		require.ErrorIs(t, err, store.ErrNotFound)

		require.True(t, b.insertToken(t, store.Token{Kind: store.TokenAdmin, Name: "bootstrap", Hash: hashOf("apa_1"), Prefix: "apa_1"}))
		require.False(t, b.insertToken(t, store.Token{Kind: store.TokenAdmin, Name: "bootstrap", Hash: hashOf("apa_2"), Prefix: "apa_2"}), "active admin names are unique")
		admin, err := b.store.TokenByHash(b.ctx, hashOf("apa_1"))
		require.NoError(t, err)
		require.Empty(t, admin.WorkspaceStatus)

		var n int
		require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error { n, err = tx.CountActiveAdminTokens(b.ctx); return err }))
		require.Equal(t, 1, n)

		err = b.store.InTx(b.ctx, func(tx store.Tx) error { return tx.RevokeToken(b.ctx, wt.ID, store.TokenWorkspace, newID(), now) })
		require.ErrorIs(t, err, store.ErrNotFound, "revoke scoped to its workspace")
		err = b.store.InTx(b.ctx, func(tx store.Tx) error { return tx.RevokeToken(b.ctx, admin.ID, store.TokenAdmin, "", now) })
		require.NoError(t, err)
		err = b.store.InTx(b.ctx, func(tx store.Tx) error { return tx.RevokeToken(b.ctx, admin.ID, store.TokenAdmin, "", now) })
		require.ErrorIs(t, err, store.ErrNotFound, "already revoked")
		require.True(t, b.insertToken(t, store.Token{Kind: store.TokenAdmin, Name: "bootstrap", Hash: hashOf("apa_3"), Prefix: "apa_3"}), "a revoked name is free again")

		require.True(t, b.insertToken(t, store.Token{Kind: store.TokenWorkspace, WorkspaceID: ws.ID, Hash: hashOf("apw_two"), Prefix: "apw_two"}))
		list, err := b.store.ListTokens(b.ctx, store.TokenFilter{Kind: store.TokenWorkspace, WorkspaceID: ws.ID})
		require.NoError(t, err)
		require.Len(t, list, 2)
		require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error { return tx.RevokeWorkspaceTokens(b.ctx, ws.ID, now) }))
		list, err = b.store.ListTokens(b.ctx, store.TokenFilter{Kind: store.TokenWorkspace, WorkspaceID: ws.ID})
		require.NoError(t, err)
		for _, tok := range list {
			require.Equal(t, now, tok.RevokedAt)
		}
		admins, err := b.store.ListTokens(b.ctx, store.TokenFilter{Kind: store.TokenAdmin})
		require.NoError(t, err)
		require.Len(t, admins, 2)
	})

	t.Run("TouchTokenAtMostOncePerInterval", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		require.True(t, b.insertToken(t, store.Token{Kind: store.TokenAdmin, Name: "a", Hash: hashOf("x"), Prefix: "x"}))
		l, err := b.store.TokenByHash(b.ctx, hashOf("x"))
		require.NoError(t, err)
		t0 := b.clock.Now().Truncate(time.Millisecond).UTC()
		require.NoError(t, b.store.TouchToken(b.ctx, l.ID, t0, t0.Add(-time.Minute)))
		require.NoError(t, b.store.TouchToken(b.ctx, l.ID, t0.Add(time.Second), t0.Add(time.Second-time.Minute)))
		l, err = b.store.TokenByHash(b.ctx, hashOf("x"))
		require.NoError(t, err)
		require.Equal(t, t0, l.LastUsedAt, "second touch within the interval is skipped")
	})

	t.Run("Sessions", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		tokID := newID()
		require.True(t, b.insertToken(t, store.Token{ID: tokID, Kind: store.TokenAdmin, Name: "ops", Hash: hashOf("apa_s"), Prefix: "apa_s"}))
		now := b.clock.Now().Truncate(time.Millisecond).UTC()
		s := store.Session{ID: newID(), Hash: hashOf("cookie"), TokenID: tokID, CreatedAt: now, ExpiresAt: now.Add(12 * time.Hour), LastSeenAt: now}
		require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error { return tx.InsertSession(b.ctx, s) }))
		l, err := b.store.SessionByHash(b.ctx, hashOf("cookie"))
		require.NoError(t, err)
		require.Equal(t, "ops", l.TokenName)
		require.False(t, l.TokenRevoked)
		require.Equal(t, s.ExpiresAt, l.ExpiresAt)
		require.NoError(t, b.store.ExtendSession(b.ctx, s.ID, now.Add(13*time.Hour), now.Add(time.Hour)))
		l, err = b.store.SessionByHash(b.ctx, hashOf("cookie"))
		require.NoError(t, err)
		require.Equal(t, now.Add(13*time.Hour), l.ExpiresAt)
		require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error { return tx.RevokeToken(b.ctx, tokID, store.TokenAdmin, "", now) }))
		l, err = b.store.SessionByHash(b.ctx, hashOf("cookie"))
		require.NoError(t, err)
		require.True(t, l.TokenRevoked)
		require.NoError(t, b.store.DeleteSession(b.ctx, hashOf("cookie")))
		_, err = b.store.SessionByHash(b.ctx, hashOf("cookie"))
		require.ErrorIs(t, err, store.ErrNotFound)
		require.NoError(t, b.store.DeleteSession(b.ctx, hashOf("cookie")), "idempotent")
	})

	t.Run("SecurityEvents", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		ws := b.insertWorkspace(t, nil)
		var ids []int64
		for i := 0; i < 2; i++ {
			require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error {
				id, err := tx.InsertSecurityEvent(b.ctx, store.SecurityEvent{
					Kind: "workspace_id_mismatch", WorkspaceID: ws.ID, Actor: "workspace:" + ws.ID, ClientIP: "127.0.0.1",
					Detail: json.RawMessage(fmt.Sprintf(`{"claimed":"%d"}`, i)), CreatedAt: b.clock.Now(),
				})
				ids = append(ids, id)
				return err
			}))
		}
		require.Greater(t, ids[1], ids[0])
	})
}

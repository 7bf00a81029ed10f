package api

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/registry"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/supervise"
	"github.com/stretchr/testify/require"
)

// forBackends runs fn as a parallel subtest on every configured back end.
func forBackends(t *testing.T, fn func(t *testing.T, b *testBundle)) {
	t.Helper()
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			fn(t, setupOn(t, backend))
		})
	}
}

func concurrently(fns ...func()) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, f := range fns {
		wg.Add(1)
		go func() { defer wg.Done(); <-start; f() }()
	}
	close(start)
	wg.Wait()
}

func TestConcurrentReparentingNeverMakesACycle(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, b *testBundle) {
		for i := 0; i < 15; i++ {
			a, err := b.registry.Create(b.ctx, "admin:test", registry.CreateInput{Name: "A"})
			require.NoError(t, err)
			c, err := b.registry.Create(b.ctx, "admin:test", registry.CreateInput{Name: "C"})
			require.NoError(t, err)
			admin := adminPrincipal()
			pa, pc := c.Workspace.ID, a.Workspace.ID
			concurrently(
				func() { b.registry.Patch(b.ctx, admin, a.Workspace.ID, registry.PatchInput{ParentID: &pa}) },
				func() { b.registry.Patch(b.ctx, admin, c.Workspace.ID, registry.PatchInput{ParentID: &pc}) },
			)
			wa, err := b.store.GetWorkspace(b.ctx, a.Workspace.ID)
			require.NoError(t, err)
			wc, err := b.store.GetWorkspace(b.ctx, c.Workspace.ID)
			require.NoError(t, err)
			require.False(t, wa.ParentID == wc.ID && wc.ParentID == wa.ID, "cycle created on try %d", i)
		}
	})
}

func TestCreateUnderParentBeingRemoved(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, b *testBundle) {
		for i := 0; i < 15; i++ {
			parent, err := b.registry.Create(b.ctx, "admin:test", registry.CreateInput{Name: "P"})
			require.NoError(t, err)
			var child registry.Created
			var childErr error
			concurrently(
				func() { b.registry.Delete(b.ctx, "admin:test", parent.Workspace.ID, true) },
				func() {
					child, childErr = b.registry.Create(b.ctx, "admin:test", registry.CreateInput{Name: "K", ParentID: parent.Workspace.ID})
				},
			)
			if childErr != nil {
				continue // refused because the parent was already gone: fine
			}
			w, err := b.store.GetWorkspace(b.ctx, child.Workspace.ID)
			require.NoError(t, err)
			require.Equal(t, store.StatusRemoved, w.Status, "a live child under a removed parent on try %d", i)
		}
	})
}

func TestLastAdminTokenSurvivesConcurrentRevocation(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, b *testBundle) {
		// The fixture has one admin token; mint a second and race two revokes.
		for i := 0; i < 10; i++ {
			_, tok, err := b.auth.MintAdminToken(b.ctx, "extra-"+string(rune('a'+i)), "admin:test")
			require.NoError(t, err)
			admins, err := b.store.ListTokens(b.ctx, store.TokenFilter{Kind: store.TokenAdmin, Limit: 1000})
			require.NoError(t, err)
			var other string
			for _, a := range admins {
				if a.RevokedAt.IsZero() && a.ID != tok.ID {
					other = a.ID
				}
			}
			concurrently(
				func() { b.auth.RevokeAdminToken(b.ctx, tok.ID) },
				func() { b.auth.RevokeAdminToken(b.ctx, other) },
			)
			admins, err = b.store.ListTokens(b.ctx, store.TokenFilter{Kind: store.TokenAdmin, Limit: 1000})
			require.NoError(t, err)
			active := 0
			for _, a := range admins {
				if a.RevokedAt.IsZero() {
					active++
				}
			}
			require.Equal(t, 1, active, "try %d", i)
		}
	})
}

func TestHostileTextIsStoredSafely(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, b *testBundle) {
		w := b.do("POST", "/registry/register", `{"url":"http://127.0.0.1:9","agent_card":{"n":"\u0000x","s":"\ud800","k\u0000":1}}`, bearer(b.ownToken))
		require.Equal(t, 200, w.Code, w.Body.String())
		w = b.do("POST", "/registry/heartbeat", `{"sample_error":"a\u0000b\ud800"}`, bearer(b.ownToken))
		require.Equal(t, 200, w.Code, w.Body.String())
		ws, err := b.store.GetWorkspace(b.ctx, b.ownID)
		require.NoError(t, err)
		require.Equal(t, "a\uFFFDb\uFFFD", ws.LastSampleError)
		require.Contains(t, string(ws.AgentCard), "\uFFFDx")

		// The same card again is not a change: no new version, no event.
		before := ws.Version
		w = b.do("POST", "/registry/update-card", `{"agent_card":{"k\u0000":1,"s":"\ud800","n":"\u0000x"}}`, bearer(b.ownToken))
		require.Equal(t, 200, w.Code, w.Body.String())
		ws, err = b.store.GetWorkspace(b.ctx, b.ownID)
		require.NoError(t, err)
		require.Equal(t, before, ws.Version)

		// A spoof carrying NUL and a huge claimed id is refused, recorded, capped.
		w = b.do("POST", "/registry/heartbeat", map[string]any{"workspace_id": "x\x00" + strings.Repeat("y", 200_000)}, bearer(b.ownToken))
		require.Equal(t, 403, w.Code)
		evs, err := b.store.ListSecurityEvents(b.ctx, store.SecurityEventFilter{Limit: 1})
		require.NoError(t, err)
		require.Less(t, len(evs[0].Detail), 1000, "details are short summaries")
	})
}

func TestNamesAreTrimmed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.do("POST", "/workspaces", map[string]any{"name": "evil\n"}, bearer(adminToken))
	require.Equal(t, 201, w.Code)
	require.Equal(t, "evil", decodeBody[map[string]any](t, w)["workspace"].(map[string]any)["name"])
	w = b.do("POST", "/workspaces", map[string]any{"name": strings.Repeat(" ", 5000) + "x"}, bearer(adminToken))
	require.Equal(t, 201, w.Code)
	require.Equal(t, "x", decodeBody[map[string]any](t, w)["workspace"].(map[string]any)["name"])
	w = b.do("PATCH", "/workspaces/"+b.ownID, map[string]any{"name": "  spaced  "}, bearer(b.ownToken))
	require.Equal(t, 200, w.Code)
	require.Equal(t, "spaced", decodeBody[map[string]any](t, w)["name"])
}

func TestSweepCountsOneProbePerIntervalAcrossReplicas(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, b *testBundle) {
		agent, healthy := newCardServer(t)
		healthy.Store(false)
		require.Equal(t, 200, b.do("POST", "/registry/register", map[string]any{"url": agent}, bearer(b.ownToken)).Code)
		h := supervise.NewRegistry(b.clock).Declare("health-sweep", registry.SweepInterval)
		replicas := []*registry.Service{b.registry, registry.New(registry.Options{Store: b.store, Clock: b.clock, Log: b.server.d.Log, HeartbeatTTL: time.Hour})}
		for round := 1; round <= 2; round++ {
			for _, r := range replicas { // both replicas sweep in the same interval
				require.NoError(t, r.SweepOnce(context.Background(), h, httpClient()))
			}
			ws, err := b.store.GetWorkspace(b.ctx, b.ownID)
			require.NoError(t, err)
			require.Equal(t, round, ws.ProbeFailures, "one failure per interval, not per replica")
			b.clock.Advance(registry.SweepInterval)
		}
	})
}

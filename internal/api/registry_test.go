package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/registry"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/supervise"
	"github.com/agentplane/agentplane/pkg/callersig"
	"github.com/stretchr/testify/require"
)

// eventsOf returns the persisted event types about workspace id, in order.
func (b *testBundle) eventsOf(id string) []string {
	b.t.Helper()
	evs, err := b.store.ListEvents(b.ctx, store.EventFilter{Limit: 1000})
	require.NoError(b.t, err)
	var out []string
	for _, e := range evs {
		if e.WorkspaceID == id && e.Type != "SECURITY_EVENT" {
			out = append(out, e.Type)
		}
	}
	return out
}

// stateEvents counts persisted events other than security records.
func (b *testBundle) stateEvents() int {
	b.t.Helper()
	evs, err := b.store.ListEvents(b.ctx, store.EventFilter{Limit: 10000})
	require.NoError(b.t, err)
	n := 0
	for _, e := range evs {
		if e.Type != "SECURITY_EVENT" {
			n++
		}
	}
	return n
}

func (b *testBundle) status(id string) string {
	b.t.Helper()
	w, err := b.store.GetWorkspace(b.ctx, id)
	require.NoError(b.t, err)
	return w.Status
}

func (b *testBundle) securityEvents() int {
	b.t.Helper()
	evs, err := b.store.ListEvents(b.ctx, store.EventFilter{Limit: 1000})
	require.NoError(b.t, err)
	n := 0
	for _, e := range evs {
		if e.Type == "SECURITY_EVENT" {
			n++
		}
	}
	return n
}

func (b *testBundle) register(tok string) *httptest.ResponseRecorder {
	return b.do("POST", "/registry/register", map[string]any{"url": "http://127.0.0.1:9999", "agent_card": map[string]any{"name": "agent"}}, bearer(tok))
}

func TestWorkspaceLifecycle(t *testing.T) {
	t.Parallel()
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			testWorkspaceLifecycle(t, func(t *testing.T) *testBundle { return setupOn(t, backend) })
		})
	}
}

func testWorkspaceLifecycle(t *testing.T, setup func(*testing.T) *testBundle) {

	t.Run("CreateRegisterHeartbeatDegradeOfflineAndBack", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		w := b.do("POST", "/workspaces", map[string]any{"name": "Security Auditor", "role": "audits", "max_concurrent_tasks": 2}, bearer(adminToken))
		require.Equal(t, 201, w.Code, w.Body.String())
		created := decodeBody[map[string]any](t, w)
		id, tok := created["id"].(string), created["auth_token"].(string)
		require.Equal(t, "awaiting_agent", created["status"])
		require.True(t, strings.HasPrefix(tok, "apw_"))
		require.Len(t, tok, 47)

		w = b.do("POST", "/registry/register", map[string]any{"id": id, "url": "http://127.0.0.1:9999", "agent_card": map[string]any{"name": "auditor"}}, bearer(tok))
		require.Equal(t, 200, w.Code, w.Body.String())
		reg := decodeBody[map[string]any](t, w)
		require.Equal(t, "registered", reg["status"])
		require.EqualValues(t, 30, reg["heartbeat_interval_seconds"])
		require.Equal(t, "online", b.status(id))

		hb := func(rate float64) int {
			return b.do("POST", "/registry/heartbeat", map[string]any{"workspace_id": id, "active_tasks": 1, "current_task": "scan", "error_rate": rate}, bearer(tok)).Code
		}
		require.Equal(t, 200, hb(0.6))
		require.Equal(t, "degraded", b.status(id))
		require.Equal(t, 200, hb(0.3))
		require.Equal(t, "degraded", b.status(id), "hysteresis: between 0.1 and 0.5 stays degraded")
		require.Equal(t, 200, hb(0.05))
		require.Equal(t, "online", b.status(id))

		// The liveness monitor marks it offline after the TTL, by store time.
		b.clock.Advance(90*time.Second + time.Millisecond)
		_, err := b.registry.MonitorOnce(b.ctx)
		require.NoError(t, err)
		require.Equal(t, "offline", b.status(id))
		require.Equal(t, 200, hb(0.0))
		require.Equal(t, "online", b.status(id))

		require.Equal(t, []string{
			"WORKSPACE_CREATED", "WORKSPACE_ONLINE", "AGENT_CARD_UPDATED", "WORKSPACE_DEGRADED", "TASK_UPDATED",
			"WORKSPACE_ONLINE", "WORKSPACE_OFFLINE", "WORKSPACE_ONLINE",
		}, b.eventsOf(id))

		got := decodeBody[map[string]any](t, b.do("GET", "/workspaces/"+id, nil, bearer(tok)))
		require.Equal(t, "online", got["status"])
		require.EqualValues(t, 1, got["active_tasks"])
		require.Equal(t, "scan", got["current_task"])
		require.EqualValues(t, 2, got["max_concurrent_tasks"])
		require.Equal(t, map[string]any{"name": "auditor"}, got["agent_card"])
	})

	t.Run("DegradedEventCarriesReasons", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.Equal(t, 200, b.register(b.ownToken).Code)
		require.Equal(t, 200, b.do("POST", "/registry/heartbeat", map[string]any{"error_rate": 0.9}, bearer(b.ownToken)).Code)
		evs, err := b.store.ListEvents(b.ctx, store.EventFilter{Limit: 100})
		require.NoError(t, err)
		var payload map[string]any
		for _, e := range evs {
			if e.Type == "WORKSPACE_DEGRADED" {
				require.NoError(t, json.Unmarshal(e.Payload, &payload))
				require.Equal(t, store.AudienceReachable, e.Audience)
				require.Equal(t, "workspace:"+b.ownID, e.Actor)
			}
		}
		require.Equal(t, map[string]any{"name": "Own", "status": "degraded", "reasons": []any{"error_rate"}}, payload)
	})

	t.Run("IdentitySpoofRefusedRecordedAndNothingWritten", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		before := b.eventsOf(b.ownID)
		cases := []struct {
			path string
			body map[string]any
			opts []reqOpt
			want string
		}{
			{"/registry/heartbeat", map[string]any{"workspace_id": b.otherID}, nil, "workspace_id"},
			{"/registry/register", map[string]any{"id": b.otherID, "url": "http://127.0.0.1:1"}, nil, "id"},
			{"/registry/update-card", map[string]any{"workspace_id": b.otherID, "agent_card": map[string]any{}}, nil, "workspace_id"},
			{"/registry/heartbeat", map[string]any{}, []reqOpt{header("X-Workspace-ID", b.otherID)}, "X-Workspace-ID"},
			{"/registry/check-access", map[string]any{"caller_id": b.otherID, "target_id": b.ownID}, nil, "caller_id"},
		}
		for i, c := range cases {
			w := b.do("POST", c.path, c.body, append([]reqOpt{bearer(b.ownToken)}, c.opts...)...)
			require.Equal(t, 403, w.Code, w.Body.String())
			require.Equal(t, c.want, decodeBody[map[string]any](t, w)["field"])
			require.Equal(t, i+1, b.securityEvents())
		}
		require.Equal(t, before, b.eventsOf(b.ownID), "nothing written")
		require.Equal(t, "awaiting_agent", b.status(b.ownID))
		require.Equal(t, "awaiting_agent", b.status(b.otherID))
	})

	t.Run("UnknownIDNeverCreatedRemovedNeverRevived", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		w := b.do("POST", "/registry/heartbeat", map[string]any{}, bearer(b.removedToken))
		require.Equal(t, 410, w.Code)
		w = b.register(b.removedToken)
		require.Equal(t, 410, w.Code)
		require.Equal(t, "removed", b.status(b.removedID))
		_, err := b.store.GetWorkspace(b.ctx, "0190f5d2-8a4b-7c3e-9f1a-2b3c4d5e6f70")
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("PauseCascadesResumeUndoesIt", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.Equal(t, 200, b.register(b.ownToken).Code)
		require.Equal(t, 200, b.register(b.otherToken).Code)
		w := b.do("POST", "/workspaces/"+b.ownID+"/pause", nil, bearer(adminToken))
		require.Equal(t, 200, w.Code, w.Body.String())
		require.Equal(t, "paused", b.status(b.ownID))
		require.Equal(t, "paused", b.status(b.otherID))
		// A heartbeat while paused records state but does not un-pause.
		require.Equal(t, 200, b.do("POST", "/registry/heartbeat", map[string]any{"active_tasks": 3}, bearer(b.otherToken)).Code)
		require.Equal(t, "paused", b.status(b.otherID))
		w = b.do("POST", "/workspaces/"+b.ownID+"/resume", nil, bearer(adminToken))
		require.Equal(t, 200, w.Code)
		require.Equal(t, "offline", b.status(b.ownID))
		require.Equal(t, "offline", b.status(b.otherID))
		require.Equal(t, 409, b.do("POST", "/workspaces/"+b.ownID+"/resume", nil, bearer(adminToken)).Code, "not paused")
		require.Contains(t, b.eventsOf(b.otherID), "WORKSPACE_PAUSED")
		require.Contains(t, b.eventsOf(b.otherID), "WORKSPACE_RESUMED")
	})

	t.Run("DeleteNeedsConfirmationForChildren", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		w := b.do("DELETE", "/workspaces/"+b.ownID, nil, bearer(adminToken))
		require.Equal(t, 409, w.Code)
		body := decodeBody[map[string]any](t, w)
		require.Equal(t, "confirmation_required", body["code"])
		require.Equal(t, []any{map[string]any{"id": b.otherID, "name": "Other"}}, body["children"])
		require.Equal(t, "awaiting_agent", b.status(b.ownID))

		w = b.do("DELETE", "/workspaces/"+b.ownID+"?confirm=true", nil, bearer(adminToken))
		require.Equal(t, 200, w.Code, w.Body.String())
		require.Equal(t, "removed", b.status(b.ownID))
		require.Equal(t, "removed", b.status(b.otherID))
		require.Equal(t, 410, b.do("POST", "/registry/heartbeat", map[string]any{}, bearer(b.otherToken)).Code)
		require.Equal(t, 401, b.do("GET", "/workspaces/"+b.otherID, nil, bearer(b.otherToken)).Code)
		require.Contains(t, b.eventsOf(b.otherID), "WORKSPACE_REMOVED")
	})

	t.Run("OnlyAdminChangesParentAndCapacity", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for field, v := range map[string]any{"parent_id": nil, "max_concurrent_tasks": 5, "url": "http://127.0.0.1:1"} {
			w := b.do("PATCH", "/workspaces/"+b.otherID, map[string]any{field: v}, bearer(b.otherToken))
			require.Equal(t, 403, w.Code, field)
			require.Equal(t, field, decodeBody[map[string]any](t, w)["field"])
		}
		w := b.do("PATCH", "/workspaces/"+b.otherID, map[string]any{"name": "Renamed", "role": "new role"}, bearer(b.otherToken))
		require.Equal(t, 200, w.Code, w.Body.String())
		require.Equal(t, "Renamed", decodeBody[map[string]any](t, w)["name"])
		w = b.do("PATCH", "/workspaces/"+b.otherID, map[string]any{"parent_id": nil}, bearer(adminToken))
		require.Equal(t, 200, w.Code, w.Body.String())
		require.Nil(t, decodeBody[map[string]any](t, w)["parent_id"])
		require.Contains(t, b.eventsOf(b.otherID), "WORKSPACE_UPDATED")
	})

	t.Run("HierarchyFollowsReparenting", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.Equal(t, 200, b.do("GET", "/registry/discover/"+b.ownID, nil, bearer(b.otherToken)).Code)
		peers := decodeBody[[]map[string]any](t, b.do("GET", "/registry/"+b.otherID+"/peers", nil, bearer(b.otherToken)))
		require.Len(t, peers, 1)
		require.Equal(t, b.ownID, peers[0]["id"])
		// Make other a root: two roots are not siblings.
		require.Equal(t, 200, b.do("PATCH", "/workspaces/"+b.otherID, map[string]any{"parent_id": nil}, bearer(adminToken)).Code)
		require.Equal(t, 403, b.do("GET", "/registry/discover/"+b.ownID, nil, bearer(b.otherToken)).Code)
		access := decodeBody[map[string]bool](t, b.do("POST", "/registry/check-access", map[string]any{"caller_id": b.otherID, "target_id": b.ownID}, bearer(adminToken)))
		require.False(t, access["allowed"])
		require.Equal(t, 200, b.do("PATCH", "/workspaces/"+b.otherID, map[string]any{"parent_id": b.ownID}, bearer(adminToken)).Code)
		access = decodeBody[map[string]bool](t, b.do("POST", "/registry/check-access", map[string]any{"caller_id": b.otherID, "target_id": b.ownID}, bearer(b.otherToken)))
		require.True(t, access["allowed"])
	})
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	admin := bearer(adminToken)
	cases := []struct {
		name         string
		method, path string
		body         any
		opts         []reqOpt
		status       int
		field        string
	}{
		{"MalformedJSON", "POST", "/workspaces", `{"name":`, nil, 400, "body"},
		{"WrongType", "POST", "/workspaces", `{"name":5}`, nil, 400, "name"},
		{"NameTooLong", "POST", "/workspaces", map[string]any{"name": strings.Repeat("n", 256)}, nil, 400, "name"},
		{"NameWithNewline", "POST", "/workspaces", map[string]any{"name": "a\nb"}, nil, 400, "name"},
		{"EmptyName", "POST", "/workspaces", map[string]any{"name": " "}, nil, 400, "name"},
		{"BadParent", "POST", "/workspaces", map[string]any{"name": "x", "parent_id": "nope"}, nil, 400, "parent_id"},
		{"UnknownParent", "POST", "/workspaces", map[string]any{"name": "x", "parent_id": "0190f5d2-8a4b-7c3e-9f1a-2b3c4d5e6f70"}, nil, 400, "parent_id"},
		{"ZeroCapacity", "POST", "/workspaces", map[string]any{"name": "x", "max_concurrent_tasks": 0}, nil, 400, "max_concurrent_tasks"},
		{"BadURL", "POST", "/workspaces", map[string]any{"name": "x", "url": "ftp://x"}, nil, 400, "url"},
		{"TooLarge", "POST", "/workspaces", `{"name":"` + strings.Repeat("x", 1<<20) + `"}`, nil, 413, "body"},
		{"NonUUIDPath", "GET", "/workspaces/not-a-uuid", nil, nil, 400, "id"},
		{"SelfParent", "PATCH", "/workspaces/{own}", map[string]any{"parent_id": "{own}"}, nil, 400, "parent_id"},
		{"ParentCycle", "PATCH", "/workspaces/{own}", map[string]any{"parent_id": "{other}"}, nil, 400, "parent_id"},
		{"NegativeActiveTasks", "POST", "/registry/heartbeat", map[string]any{"active_tasks": -1}, []reqOpt{bearer("{owntoken}")}, 400, "active_tasks"},
		{"ErrorRateAboveOne", "POST", "/registry/heartbeat", map[string]any{"error_rate": 1.5}, []reqOpt{bearer("{owntoken}")}, 400, "error_rate"},
		{"ErrorRateNaNString", "POST", "/registry/heartbeat", `{"error_rate":"NaN"}`, []reqOpt{bearer("{owntoken}")}, 400, "error_rate"},
		{"ErrorRateOverflow", "POST", "/registry/heartbeat", `{"error_rate":1e999}`, []reqOpt{bearer("{owntoken}")}, 400, "error_rate"},
		{"NegativeUptime", "POST", "/registry/heartbeat", map[string]any{"uptime_seconds": -5}, []reqOpt{bearer("{owntoken}")}, 400, "uptime_seconds"},
		{"RegisterWithoutURL", "POST", "/registry/register", map[string]any{}, []reqOpt{bearer("{owntoken}")}, 400, "url"},
		{"RegisterUserinfoURL", "POST", "/registry/register", map[string]any{"url": "http://u:p@127.0.0.1/"}, []reqOpt{bearer("{owntoken}")}, 400, "url"},
		{"CardNotObject", "POST", "/registry/update-card", map[string]any{"agent_card": []int{1}}, []reqOpt{bearer("{owntoken}")}, 400, "agent_card"},
		{"LimitOutOfRange", "GET", "/workspaces?limit=5000", nil, nil, 400, "limit"},
		{"BadCursor", "GET", "/workspaces?after=zzz", nil, nil, 400, "after"},
		{"AdminTokenNameEmpty", "POST", "/admin/tokens", map[string]any{"name": ""}, nil, 400, "name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := strings.NewReplacer("{own}", b.ownID, "{other}", b.otherID).Replace(c.path)
			body := c.body
			if m, ok := body.(map[string]any); ok {
				for k, v := range m {
					if s, ok := v.(string); ok {
						m[k] = strings.NewReplacer("{own}", b.ownID, "{other}", b.otherID).Replace(s)
					}
				}
			}
			opts := []reqOpt{admin}
			if c.opts != nil {
				opts = []reqOpt{bearer(b.ownToken)}
			}
			before := b.stateEvents()
			w := b.do(c.method, path, body, opts...)
			require.Equal(t, c.status, w.Code, w.Body.String())
			require.Equal(t, c.field, decodeBody[map[string]any](t, w)["field"], w.Body.String())
			require.Equal(t, before, b.stateEvents(), "no partial write")
		})
	}
}

func TestHealthSweep(t *testing.T) {
	t.Parallel()
	b := setup(t)
	agent, healthy := newCardServer(t)
	w := b.do("POST", "/registry/register", map[string]any{"url": agent}, bearer(b.ownToken))
	require.Equal(t, 200, w.Code, w.Body.String())
	h := supervise.NewRegistry(b.clock).Declare("health-sweep", registry.SweepInterval)

	sweep := func() {
		require.NoError(t, b.registry.SweepOnce(b.ctx, h, httpClient()))
		b.clock.Advance(registry.SweepInterval) // the next sweep is a new interval
	}
	sweep()
	require.Equal(t, "online", b.status(b.ownID))
	healthy.Store(false)
	sweep()
	sweep()
	require.Equal(t, "online", b.status(b.ownID), "two failures are not yet three")
	sweep()
	require.Equal(t, "degraded", b.status(b.ownID))
	ws, err := b.store.GetWorkspace(b.ctx, b.ownID)
	require.NoError(t, err)
	require.Equal(t, []string{registry.ReasonCardUnreachable}, ws.DegradedReasons)
	healthy.Store(true)
	sweep()
	require.Equal(t, "online", b.status(b.ownID), "one success clears the reason")
}

func TestLivenessMonitorWithShortTTL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, 200, b.register(b.ownToken).Code)
	reg := registry.New(registry.Options{Store: b.store, Clock: b.clock, Log: b.server.d.Log, HeartbeatTTL: 3 * time.Second})
	wait, err := reg.MonitorOnce(b.ctx)
	require.NoError(t, err)
	require.Equal(t, registry.MonitorInterval, wait, "wakes at least once per beat interval")
	b.clock.Advance(2500 * time.Millisecond)
	wait, err = reg.MonitorOnce(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 501*time.Millisecond, wait, "sleeps until just past the next expiry")
	b.clock.Advance(500 * time.Millisecond)
	_, err = reg.MonitorOnce(b.ctx)
	require.NoError(t, err)
	require.Equal(t, "online", b.status(b.ownID), "at the TTL it is not yet expired")
	b.clock.Advance(time.Millisecond)
	_, err = reg.MonitorOnce(b.ctx)
	require.NoError(t, err)
	require.Equal(t, "offline", b.status(b.ownID))
}

func TestMonitorOnTwoReplicasEmitsOneEvent(t *testing.T) {
	t.Parallel()
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			testMonitorOnTwoReplicas(t, setupOn(t, backend))
		})
	}
}

func testMonitorOnTwoReplicas(t *testing.T, b *testBundle) {
	require.Equal(t, 200, b.register(b.ownToken).Code)
	b.clock.Advance(91 * time.Second)
	errs := make(chan error, 2)
	for i := 0; i < 2; i++ {
		reg := registry.New(registry.Options{Store: b.store, Clock: b.clock, Log: b.server.d.Log, HeartbeatTTL: 90 * time.Second})
		go func() { _, err := reg.MonitorOnce(context.Background()); errs <- err }()
	}
	require.NoError(t, <-errs)
	require.NoError(t, <-errs)
	n := 0
	for _, e := range b.eventsOf(b.ownID) {
		if e == "WORKSPACE_OFFLINE" {
			n++
		}
	}
	require.Equal(t, 1, n, fmt.Sprint(b.eventsOf(b.ownID)))
}

func TestRegisterHandsTheAgentItsCallerSecret(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.register(b.ownToken)
	require.Equal(t, 200, w.Code)
	secret, err := base64.RawURLEncoding.DecodeString(decodeBody[map[string]any](t, w)["caller_secret"].(string))
	require.NoError(t, err)
	require.Len(t, secret, 32)
	stored, err := b.store.GetWorkspace(b.ctx, b.ownID)
	require.NoError(t, err)
	// What the gateway will sign with, the agent can verify.
	now := time.Now()
	h := callersig.Sign(stored.OutboundSecret, "admin", []byte("{}"), now)
	c, err := callersig.Verify(secret, h, []byte("{}"), now)
	require.NoError(t, err)
	require.Equal(t, "admin", c.ID)
	// Another workspace's agent gets a different secret.
	other := decodeBody[map[string]any](t, b.register(b.otherToken))["caller_secret"]
	require.NotEqual(t, base64.RawURLEncoding.EncodeToString(secret), other)
}

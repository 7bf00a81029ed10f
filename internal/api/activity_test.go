package api

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/activity"
	"github.com/agentplane/agentplane/internal/registry"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/store/sqlitestore"
	"github.com/stretchr/testify/require"
)

func (b *testBundle) activityRows(id string) []store.Activity {
	b.t.Helper()
	rows, err := b.store.ListActivity(b.ctx, store.ActivityFilter{WorkspaceID: id, Limit: 1000})
	require.NoError(b.t, err)
	return rows
}

func TestActivityLog(t *testing.T) {
	t.Parallel()

	t.Run("LoggedOnlyAfterStoredWithEvent", func(t *testing.T) {
		t.Parallel()
		forBackends(t, func(t *testing.T, b *testBundle) {
			w := b.do("POST", "/workspaces/"+b.ownID+"/activity", map[string]any{
				"activity_type": "agent_log", "summary": "scanned 12 files", "source_id": b.ownID,
				"request_body": map[string]any{"q": 1}, "response_body": "done", "duration_ms": 42, "unknown_field": true,
			}, bearer(b.ownToken))
			require.Equal(t, 200, w.Code, w.Body.String())
			res := decodeBody[map[string]any](t, w)
			require.Equal(t, "logged", res["status"])
			rows := b.activityRows(b.ownID)
			require.Len(t, rows, 1)
			require.Equal(t, res["id"], rows[0].ID)
			require.Equal(t, `{"q":1}`, rows[0].RequestBody)
			require.Equal(t, "done", rows[0].ResponseBody)
			require.Equal(t, "agent", rows[0].Source)
			evs, err := b.store.ListEvents(b.ctx, store.EventFilter{Type: "ACTIVITY_LOGGED"})
			require.NoError(t, err)
			require.Len(t, evs, 1)
			require.Equal(t, store.AudienceWorkspace, evs[0].Audience)
			require.JSONEq(t, `{"activity_id":"`+rows[0].ID+`","type":"agent_log","summary":"scanned 12 files"}`, string(evs[0].Payload))
		})
	})

	t.Run("SpoofedSourceRefusedRecordedNothingWritten", func(t *testing.T) {
		t.Parallel()
		forBackends(t, func(t *testing.T, b *testBundle) {
			w := b.do("POST", "/workspaces/"+b.ownID+"/activity", map[string]any{"activity_type": "agent_log", "source_id": b.otherID}, bearer(b.ownToken))
			require.Equal(t, 403, w.Code)
			require.Equal(t, "source_id must match authenticated workspace", decodeBody[map[string]any](t, w)["error"].(string)[len("source_id: "):])
			require.Empty(t, b.activityRows(b.ownID))
			require.Empty(t, b.activityRows(b.otherID))
			sec, err := b.store.ListSecurityEvents(b.ctx, store.SecurityEventFilter{})
			require.NoError(t, err)
			require.Len(t, sec, 1)
			require.Equal(t, "source_id_spoof", sec[0].Kind)
			require.Contains(t, string(sec[0].Detail), b.otherID)
			evs, err := b.store.ListEvents(b.ctx, store.EventFilter{Type: "SECURITY_EVENT"})
			require.NoError(t, err)
			require.Len(t, evs, 1)
			require.Equal(t, store.AudienceAdmin, evs[0].Audience)
			none, err := b.store.ListEvents(b.ctx, store.EventFilter{Type: "ACTIVITY_LOGGED"})
			require.NoError(t, err)
			require.Empty(t, none)
			// The admin listing shows it.
			list := decodeBody[[]map[string]any](t, b.do("GET", "/admin/security-events", nil, bearer(adminToken)))
			require.Equal(t, "source_id_spoof", list[0]["kind"])
		})
	})

	t.Run("BodiesCappedWithFlagAndUTF8Replaced", func(t *testing.T) {
		t.Parallel()
		b := setup(t) // bodies capped at 4096 bytes in the fixture
		w := b.do("POST", "/workspaces/"+b.ownID+"/activity",
			`{"activity_type":"a2a_send","request_body":"`+strings.Repeat("é", 3000)+`","response_body":"ok`+"\xff"+`"}`, bearer(b.ownToken))
		require.Equal(t, 200, w.Code, w.Body.String())
		res := decodeBody[map[string]any](t, w)
		require.Equal(t, true, res["request_truncated"])
		require.Equal(t, false, res["response_truncated"])
		rows := b.activityRows(b.ownID)
		require.LessOrEqual(t, len(rows[0].RequestBody), 4096)
		require.True(t, strings.HasSuffix(rows[0].RequestBody, "é"), "cut at a character boundary")
		require.Equal(t, "ok\uFFFD", rows[0].ResponseBody)
		got := decodeBody[[]map[string]any](t, b.do("GET", "/workspaces/"+b.ownID+"/activity", nil, bearer(adminToken)))
		require.Equal(t, true, got[0]["request_truncated"])
	})

	t.Run("BadInputNamesTheField", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		path := "/workspaces/" + b.ownID
		cases := []struct {
			path  string
			body  any
			field string
		}{
			{path + "/activity", map[string]any{"activity_type": "hack"}, "activity_type"},
			{path + "/activity", map[string]any{"activity_type": "error", "duration_ms": -1}, "duration_ms"},
			{path + "/activity", map[string]any{"activity_type": "error", "target_id": "x"}, "target_id"},
			{path + "/activity", `{"activity_type":"error","duration_ms":"slow"}`, "duration_ms"},
			{path + "/notify", map[string]any{}, "message"},
			{path + "/notify", map[string]any{"message": "hi", "attachments": []any{map[string]any{"uri": "https://x/a", "name": "a"}, map[string]any{"name": "b"}}}, "attachments[1].uri"},
			{path + "/notify", map[string]any{"message": "hi", "attachments": []any{map[string]any{"uri": "https://x/a"}}}, "attachments[0].name"},
			{path + "/notify", map[string]any{"message": "hi", "attachments": []any{map[string]any{"uri": "https://x/a", "name": "a", "size": -1}}}, "attachments[0].size"},
			{path + "/notify", map[string]any{"message": "hi", "attachments": []any{map[string]any{"uri": "https://x/a", "name": "a", "mimeType": "pdf"}}}, "attachments[0].mimeType"},
		}
		for _, c := range cases {
			w := b.do("POST", c.path, c.body, bearer(b.ownToken))
			require.Equal(t, 400, w.Code, w.Body.String())
			require.Equal(t, c.field, decodeBody[map[string]any](t, w)["field"], w.Body.String())
		}
		for _, q := range []string{"?limit=501", "?type=nope", "?source=robot", "?before=zz"} {
			require.Equal(t, 400, b.do("GET", path+"/activity"+q, nil, bearer(adminToken)).Code, q)
		}
		require.Empty(t, b.activityRows(b.ownID))
	})

	t.Run("NotifyStoresMessageAndEvent", func(t *testing.T) {
		t.Parallel()
		forBackends(t, func(t *testing.T, b *testBundle) {
			w := b.do("POST", "/workspaces/"+b.ownID+"/notify", map[string]any{
				"message": "Audit finished: 3 findings", "attachments": []any{map[string]any{"uri": "https://files.example/report.pdf", "name": "report.pdf", "mimeType": "application/pdf", "size": 1234}},
			}, bearer(b.ownToken))
			require.Equal(t, 200, w.Code, w.Body.String())
			rows := b.activityRows(b.ownID)
			require.Len(t, rows, 1)
			require.Equal(t, "agent_message", rows[0].ActivityType)
			require.Contains(t, string(rows[0].Attachments), "report.pdf")
			evs, err := b.store.ListEvents(b.ctx, store.EventFilter{Type: "AGENT_MESSAGE"})
			require.NoError(t, err)
			require.Len(t, evs, 1)
			var p map[string]any
			require.NoError(t, json.Unmarshal(evs[0].Payload, &p))
			require.Equal(t, "Audit finished: 3 findings", p["preview"])
		})
	})

	t.Run("ListFiltersAndPages", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for i, typ := range []string{"agent_log", "error", "agent_log"} {
			w := b.do("POST", "/workspaces/"+b.ownID+"/activity", map[string]any{"activity_type": typ, "summary": typ + string(rune('0'+i))}, bearer(b.ownToken))
			require.Equal(t, 200, w.Code)
			b.clock.Advance(time.Millisecond)
		}
		page := decodeBody[[]map[string]any](t, b.do("GET", "/workspaces/"+b.ownID+"/activity?limit=2", nil, bearer(b.ownToken)))
		require.Len(t, page, 2)
		require.Equal(t, "agent_log2", page[0]["summary"], "newest first")
		rest := decodeBody[[]map[string]any](t, b.do("GET", "/workspaces/"+b.ownID+"/activity?before="+page[1]["id"].(string), nil, bearer(b.ownToken)))
		require.Len(t, rest, 1)
		errs := decodeBody[[]map[string]any](t, b.do("GET", "/workspaces/"+b.ownID+"/activity?type=error&source=agent", nil, bearer(adminToken)))
		require.Len(t, errs, 1)
	})
}

// TestFailedWriteIsNotLogged holds SQLite's write lock from another
// connection: the write fails, the answer is 5xx, never "logged".
func TestFailedWriteIsNotLogged(t *testing.T) {
	t.Parallel()
	b := setup(t)
	path := b.store.(*sqlitestore.Store).Path()
	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(0)")
	require.NoError(t, err)
	defer other.Close()
	conn, err := other.Conn(context.Background())
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE")
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req := httptest.NewRequest("POST", "/workspaces/"+b.ownID+"/activity", strings.NewReader(`{"activity_type":"agent_log"}`)).WithContext(ctx)
	req.Header.Set("Authorization", "Bearer "+b.ownToken)
	w := httptest.NewRecorder()
	b.handler.ServeHTTP(w, req)
	require.GreaterOrEqual(t, w.Code, 500, w.Body.String())
	require.NotContains(t, w.Body.String(), "logged")
	_, err = conn.ExecContext(context.Background(), "ROLLBACK")
	require.NoError(t, err)
	require.Empty(t, b.activityRows(b.ownID))
}

func TestEventVisibility(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, b *testBundle) {
		// A stranger: a root workspace, so not reachable from own/other.
		stranger, err := b.registry.Create(b.ctx, "admin:test", registryCreate("Stranger"))
		require.NoError(t, err)
		require.Equal(t, 200, b.do("POST", "/workspaces/"+b.ownID+"/activity", map[string]any{"activity_type": "agent_log"}, bearer(b.ownToken)).Code)
		require.Equal(t, 200, b.do("POST", "/workspaces/"+b.otherID+"/notify", map[string]any{"message": "hello"}, bearer(b.otherToken)).Code)
		require.Equal(t, 403, b.do("POST", "/workspaces/"+b.ownID+"/activity", map[string]any{"activity_type": "agent_log", "source_id": b.otherID}, bearer(b.ownToken)).Code)
		b.serve()
		b.caughtUp()

		seen := func(tok string, query string) map[string]int {
			w := b.do("GET", "/events"+query, nil, bearer(tok))
			require.Equal(t, 200, w.Code, w.Body.String())
			require.NotEmpty(t, w.Header().Get("X-Next-Since"))
			out := map[string]int{}
			for _, e := range decodeBody[[]map[string]any](t, w) {
				ws, _ := e["workspace_id"].(string)
				key := e["event"].(string)
				switch ws {
				case b.ownID:
					key += "@own"
				case b.otherID:
					key += "@other"
				case stranger.Workspace.ID:
					key += "@stranger"
				}
				out[key]++
			}
			return out
		}
		admin := seen(adminToken, "")
		require.Equal(t, 1, admin["SECURITY_EVENT@own"])
		require.Equal(t, 1, admin["ACTIVITY_LOGGED@own"])
		require.Equal(t, 1, admin["AGENT_MESSAGE@other"])
		require.Equal(t, 1, admin["WORKSPACE_CREATED@stranger"])

		own := seen(b.ownToken, "")
		require.Equal(t, 1, own["ACTIVITY_LOGGED@own"], "its own workspace-audience events")
		require.Zero(t, own["AGENT_MESSAGE@other"], "another workspace's own messages")
		require.Equal(t, 1, own["WORKSPACE_CREATED@other"], "reachable: its child")
		require.Zero(t, own["WORKSPACE_CREATED@stranger"], "not reachable")
		require.Zero(t, own["SECURITY_EVENT@own"], "admin only, even about itself")

		strangerSees := seen(stranger.Token, "")
		require.Equal(t, map[string]int{"WORKSPACE_CREATED@stranger": 1}, strangerSees)

		filtered := seen(adminToken, "?type=ACTIVITY_LOGGED&workspace_id="+b.ownID+"&limit=5")
		require.Equal(t, map[string]int{"ACTIVITY_LOGGED@own": 1}, filtered)
		require.Equal(t, 400, b.do("GET", "/events?since=-1", nil, bearer(adminToken)).Code)
		require.Equal(t, 400, b.do("GET", "/events?limit=1001", nil, bearer(adminToken)).Code)
		require.Equal(t, 400, b.do("GET", "/events?workspace_id=x", nil, bearer(adminToken)).Code)
	})
}

func TestRetention(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, b *testBundle) {
		require.Equal(t, 200, b.do("POST", "/workspaces/"+b.ownID+"/activity", map[string]any{"activity_type": "agent_log", "summary": "old"}, bearer(b.ownToken)).Code)
		b.clock.Advance(8 * 24 * time.Hour)
		require.Equal(t, 200, b.do("POST", "/workspaces/"+b.ownID+"/activity", map[string]any{"activity_type": "agent_log", "summary": "new"}, bearer(b.ownToken)).Code)
		r := activity.NewRetention(b.store, b.clock, slog.New(slog.NewTextHandler(io.Discard, nil)), 7*24*time.Hour)
		n, err := r.Pass(b.ctx)
		require.NoError(t, err)
		require.Positive(t, n)
		rows := b.activityRows(b.ownID)
		require.Len(t, rows, 1)
		require.Equal(t, "new", rows[0].Summary)
		evs, err := b.store.ListEvents(b.ctx, store.EventFilter{Limit: 1000})
		require.NoError(t, err)
		for _, e := range evs {
			require.False(t, e.CreatedAt.Before(b.clock.Now().Add(-7*24*time.Hour)), "old events pruned: %s", e.Type)
		}
		require.NotEmpty(t, evs, "recent events kept")
	})
}

func registryCreate(name string) registry.CreateInput { return registry.CreateInput{Name: name} }

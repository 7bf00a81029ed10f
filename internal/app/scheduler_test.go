package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/testenv"
	"github.com/stretchr/testify/require"
)

// recordingAgent is an A2A 0.3 agent on loopback that logs every message
// it receives and answers after delay.
type recordingAgent struct {
	srv   *httptest.Server
	mu    sync.Mutex
	msgs  []map[string]any
	delay time.Duration
}

func newRecordingAgent(t *testing.T, delay time.Duration) *recordingAgent {
	t.Helper()
	a := &recordingAgent{delay: delay}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var env struct {
			ID     json.RawMessage
			Params struct {
				Message map[string]any
			}
		}
		_ = json.NewDecoder(r.Body).Decode(&env)
		a.mu.Lock()
		a.msgs = append(a.msgs, env.Params.Message)
		a.mu.Unlock()
		select {
		case <-time.After(a.delay):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"kind":"message","role":"agent","parts":[{"kind":"text","text":"audit done"}]}}`, env.ID)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *recordingAgent) messages() []map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]map[string]any(nil), a.msgs...)
}

func (b *testBundle) call(t *testing.T, method, path, token string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		buf, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, b.base+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func jsonOf[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(b, &v), string(b))
	return v
}

// TestSchedulerEndToEnd: a real server, a real agent on loopback, a
// per-second schedule created through the API. Waits are for states, bounded.
func TestSchedulerEndToEnd(t *testing.T) {
	t.Parallel()
	backends := []string{"sqlite"}
	if os.Getenv(testenv.PostgresURLEnv) != "" || testenv.InCI() {
		backends = append(backends, "postgres")
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			args := []string{"--allow-private-agents"}
			if backend == "postgres" {
				args = append(args, "--database-url", testenv.PostgresSchema(t), "--secret-key", strings.Repeat("ab", 32))
			}
			b := start(t, testConfig(t, args...))
			<-b.app.Migrated()
			agent := newRecordingAgent(t, 0)

			code, body := b.call(t, "POST", "/workspaces", adminToken, map[string]any{"name": "Security Auditor"})
			require.Equal(t, 201, code, string(body))
			ws := jsonOf[map[string]any](t, body)
			id, tok := ws["id"].(string), ws["auth_token"].(string)
			code, body = b.call(t, "POST", "/registry/register", tok, map[string]any{"url": agent.srv.URL})
			require.Equal(t, 200, code, string(body))

			// Validation names the field; duplicates are 409.
			code, body = b.call(t, "POST", "/workspaces/"+id+"/schedules", tok, map[string]any{"name": "x", "cron_expr": "61 * * * *", "prompt": "p"})
			require.Equal(t, 400, code)
			require.Contains(t, string(body), "cron_expr")
			code, body = b.call(t, "POST", "/workspaces/"+id+"/schedules", tok, map[string]any{"name": "x", "cron_expr": "* * * * *", "prompt": 5})
			require.Equal(t, 400, code)
			require.Contains(t, string(body), "prompt")

			code, body = b.call(t, "POST", "/workspaces/"+id+"/schedules", tok, map[string]any{
				"name": "audit", "cron_expr": "* * * * * *", "prompt": "run the security audit",
			})
			require.Equal(t, 201, code, string(body))
			created := jsonOf[map[string]any](t, body)
			sid := created["id"].(string)
			require.NotNil(t, created["next_run_at"])
			code, _ = b.call(t, "POST", "/workspaces/"+id+"/schedules", tok, map[string]any{"name": "audit", "cron_expr": "* * * * *", "prompt": "p"})
			require.Equal(t, 409, code)

			// Within seconds the agent gets the prompt, with the run's ids.
			eventually(t, "a succeeded run", func() bool {
				_, body := b.call(t, "GET", "/workspaces/"+id+"/schedules/"+sid+"/history", tok, nil)
				for _, r := range jsonOf[[]map[string]any](t, body) {
					if r["status"] == "succeeded" {
						return true
					}
				}
				return false
			})
			msgs := agent.messages()
			require.NotEmpty(t, msgs)
			m := msgs[0]
			require.Equal(t, "user", m["role"])
			require.Equal(t, []any{map[string]any{"kind": "text", "text": "run the security audit"}}, m["parts"])
			meta := m["metadata"].(map[string]any)
			require.Equal(t, sid, meta["schedule_id"])
			require.Equal(t, "run-"+meta["run_id"].(string)+"-a1", m["messageId"])

			code, body = b.call(t, "GET", "/workspaces/"+id+"/schedules/"+sid, tok, nil)
			require.Equal(t, 200, code)
			got := jsonOf[map[string]any](t, body)
			require.GreaterOrEqual(t, got["run_count"].(float64), 1.0)
			require.Len(t, got["next_runs"], 10)
			require.NotEmpty(t, got["recent_runs"])

			// Pause: nothing fires, nothing is recorded for the paused slots.
			code, body = b.call(t, "POST", "/workspaces/"+id+"/schedules/"+sid+"/pause", tok, map[string]any{"note": "maintenance"})
			require.Equal(t, 200, code, string(body))
			require.Equal(t, "maintenance", jsonOf[map[string]any](t, body)["pause_note"])
			eventually(t, "no run in flight", func() bool {
				_, body := b.call(t, "GET", "/workspaces/"+id+"/schedules/"+sid+"/history", tok, nil)
				for _, r := range jsonOf[[]map[string]any](t, body) {
					if r["status"] == "pending" || r["status"] == "running" {
						return false
					}
				}
				return true
			})
			before := len(agent.messages())
			_, body = b.call(t, "GET", "/workspaces/"+id+"/schedules/"+sid+"/history?limit=1000", tok, nil)
			rowsBefore := len(jsonOf[[]map[string]any](t, body))
			time.Sleep(1500 * time.Millisecond) // at least one paused slot passes (a bounded look, not a timing assertion)
			require.Len(t, agent.messages(), before, "a paused schedule does not fire")
			_, body = b.call(t, "GET", "/workspaces/"+id+"/schedules/"+sid+"/history?limit=1000", tok, nil)
			require.Len(t, jsonOf[[]map[string]any](t, body), rowsBefore, "paused slots are not recorded")

			// Run now: a real run, trigger manual.
			code, body = b.call(t, "POST", "/workspaces/"+id+"/schedules/"+sid+"/run", tok, nil)
			require.Equal(t, 202, code, string(body))
			runID := jsonOf[map[string]any](t, body)["run_id"].(string)
			eventually(t, "the manual run to succeed", func() bool {
				_, body := b.call(t, "GET", "/workspaces/"+id+"/schedules/"+sid+"/runs/"+runID, tok, nil)
				r := jsonOf[map[string]any](t, body)
				return r["status"] == "succeeded" && r["trigger"] == "manual" && r["response_body"] == "audit done"
			})

			// Records: cron_run activity and events, one terminal event per run.
			_, body = b.call(t, "GET", "/workspaces/"+id+"/activity?type=cron_run", tok, nil)
			require.NotEmpty(t, jsonOf[[]map[string]any](t, body))
			_, body = b.call(t, "GET", "/events?limit=1000", adminToken, nil)
			terminal := map[string]int{}
			started := 0
			for _, ev := range jsonOf[[]map[string]any](t, body) {
				p, _ := ev["payload"].(map[string]any)
				switch ev["event"] {
				case "CRON_EXECUTED", "CRON_FAILED", "CRON_SKIPPED":
					terminal[p["run_id"].(string)]++
				case "CRON_STARTED":
					started++
				}
			}
			require.NotZero(t, started)
			for run, n := range terminal {
				require.Equal(t, 1, n, "run %s has %d terminal events", run, n)
			}

			// Operations: the overview, the health page and the metrics.
			code, body = b.call(t, "GET", "/admin/scheduler", adminToken, nil)
			require.Equal(t, 200, code, string(body))
			ov := jsonOf[map[string]any](t, body)
			require.Contains(t, ov, "due_backlog")
			require.NotNil(t, ov["replica"].(map[string]any)["last_claim_at"])
			code, _ = b.call(t, "GET", "/admin/scheduler", tok, nil)
			require.Equal(t, 403, code, "admin only")
			code, body = b.call(t, "GET", "/admin/schedules/health", adminToken, nil)
			require.Equal(t, 200, code, string(body))
			var found bool
			for _, h := range jsonOf[[]map[string]any](t, body) {
				if h["id"] == sid {
					found = true
					require.Equal(t, false, h["stale"])
					require.Contains(t, h, "last_lateness_ms")
				}
			}
			require.True(t, found)
			code, body = b.call(t, "GET", "/metrics", adminToken, nil)
			require.Equal(t, 200, code)
			require.Contains(t, string(body), `agentplane_scheduler_runs_total{status="succeeded"}`)
			require.Contains(t, string(body), "agentplane_scheduler_lateness_seconds_bucket")

			// Delete: nothing fires afterwards.
			code, _ = b.call(t, "DELETE", "/workspaces/"+id+"/schedules/"+sid, tok, nil)
			require.Equal(t, 200, code)
			code, _ = b.call(t, "GET", "/workspaces/"+id+"/schedules/"+sid, tok, nil)
			require.Equal(t, 404, code)
		})
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/testenv"
	"github.com/stretchr/testify/require"
)

const procAdmin = "process-test-admin-token-0123"

// serveProcess is `agentplane serve` as a real process (this test binary
// re-run as the command).
type serveProcess struct {
	cmd    *exec.Cmd
	base   string
	stderr *syncBuf
	done   chan error
}

func startServe(t *testing.T, store []string) *serveProcess {
	t.Helper()
	addr := freePort(t)
	args := append([]string{"serve", "--listen", addr, "--admin-token", procAdmin, "--allow-private-agents", "--log-format", "json"}, store...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "AGENTPLANE_TEST_RUN_MAIN=1")
	p := &serveProcess{cmd: cmd, base: "http://" + addr, stderr: &syncBuf{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	require.NoError(t, cmd.Start())
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		p.done <- nil
		if t.Failed() {
			t.Logf("serve stderr:\n%s", p.stderr.String())
		}
	})
	waitUntil(t, "the server to be ready", func() bool {
		resp, err := http.Get(p.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return p
}

// kill9 kills the process without letting it clean up.
func (p *serveProcess) kill9(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	<-p.done
	p.done <- nil
}

func (p *serveProcess) do(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.base+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+procAdmin)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func decodeAs[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(b, &v), string(b))
	return v
}

func (p *serveProcess) run(t *testing.T, ws, sid, rid string) map[string]any {
	t.Helper()
	code, body := p.do(t, "GET", "/workspaces/"+ws+"/schedules/"+sid+"/runs/"+rid, nil)
	require.Equal(t, 200, code, string(body))
	return decodeAs[map[string]any](t, body)
}

// TestSchedulerWithRealProcesses: `agentplane serve` and `agentplane agent`
// as real processes. A schedule's run reaches the command agent; a replica
// killed with SIGKILL while its run talks to the agent leaves an abandoned
// run (found by the next replica's lease sweep, by store time), never a
// running one, and the run is not resent.
func TestSchedulerWithRealProcesses(t *testing.T) {
	t.Parallel()
	stores := map[string]func(t *testing.T) []string{"sqlite": func(t *testing.T) []string { return []string{"--data-dir", t.TempDir()} }}
	if os.Getenv(testenv.PostgresURLEnv) != "" || testenv.InCI() {
		stores["postgres"] = func(t *testing.T) []string {
			return []string{"--database-url", testenv.PostgresSchema(t), "--secret-key", strings.Repeat("cd", 32)}
		}
	}
	for name, storeArgs := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := storeArgs(t)
			srv := startServe(t, st)

			code, body := srv.do(t, "POST", "/workspaces", map[string]any{"name": "Ticker"})
			require.Equal(t, 201, code, string(body))
			ws := decodeAs[map[string]any](t, body)
			wsID := ws["id"].(string)
			// The agent answers "tick", except for "hang", which it never finishes.
			startAgentProcess(t, ws["auth_token"].(string), "--platform", srv.base,
				"--exec", `read line; if [ "$line" = hang ]; then sleep 300; fi; echo tick`)
			waitUntil(t, "the agent to register", func() bool {
				_, b := srv.do(t, "GET", "/workspaces/"+wsID, nil)
				return decodeAs[map[string]any](t, b)["status"] == "online"
			})

			code, body = srv.do(t, "POST", "/workspaces/"+wsID+"/schedules", map[string]any{
				"name": "tick", "cron_expr": "* * * * * *", "prompt": "tick?",
			})
			require.Equal(t, 201, code, string(body))
			tick := decodeAs[map[string]any](t, body)["id"].(string)
			waitUntil(t, "a succeeded run with the agent's answer", func() bool {
				_, b := srv.do(t, "GET", "/workspaces/"+wsID+"/schedules/"+tick+"/history", nil)
				for _, r := range decodeAs[[]map[string]any](t, b) {
					if r["status"] == "succeeded" && r["response_preview"] == "tick\n" {
						return true
					}
				}
				return false
			})
			code, _ = srv.do(t, "POST", "/workspaces/"+wsID+"/schedules/"+tick+"/pause", map[string]any{"note": "test"})
			require.Equal(t, 200, code)

			// A run that hangs at the agent, then the replica dies hard.
			code, body = srv.do(t, "POST", "/workspaces/"+wsID+"/schedules", map[string]any{
				"name": "hang", "cron_expr": "0 0 1 1 *", "prompt": "hang",
			})
			require.Equal(t, 201, code, string(body))
			hang := decodeAs[map[string]any](t, body)["id"].(string)
			waitUntil(t, "the tick schedule to be idle", func() bool {
				_, b := srv.do(t, "GET", "/admin/scheduler", nil)
				return decodeAs[map[string]any](t, b)["replica"].(map[string]any)["running"] == 0.0
			})
			code, body = srv.do(t, "POST", "/workspaces/"+wsID+"/schedules/"+hang+"/run", nil)
			require.Equal(t, 202, code, string(body))
			rid := decodeAs[map[string]any](t, body)["run_id"].(string)
			waitUntil(t, "the run to reach the agent", func() bool {
				r := srv.run(t, wsID, hang, rid)
				return r["status"] == "running" && r["attempt"] == 1.0
			})
			srv.kill9(t)

			// The next replica (a restart of the same store) finds it by its
			// expired lease: abandoned, not resent.
			next := startServe(t, st)
			// Up to LeaseTTL after the last renewal, plus one sweep interval.
			deadline := time.Now().Add(90 * time.Second)
			for next.run(t, wsID, hang, rid)["status"] != "abandoned" {
				require.True(t, time.Now().Before(deadline), "the run was never abandoned: %v", next.run(t, wsID, hang, rid))
				time.Sleep(100 * time.Millisecond)
			}
			r := next.run(t, wsID, hang, rid)
			require.Contains(t, r["error_detail"], "not resent")
			require.Equal(t, 1.0, r["attempt"])
			_, body = next.do(t, "GET", "/events?type=CRON_FAILED&limit=1000", nil)
			var abandoned int
			for _, ev := range decodeAs[[]map[string]any](t, body) {
				p := ev["payload"].(map[string]any)
				if p["run_id"] == rid {
					require.Equal(t, "abandoned", p["status"])
					abandoned++
				}
			}
			require.Equal(t, 1, abandoned, "exactly one terminal event")
		})
	}
}

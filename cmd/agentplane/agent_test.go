package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/app"
	"github.com/agentplane/agentplane/internal/config"
	"github.com/stretchr/testify/require"
)

func runAgentCLI(env []string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // flag errors and --help return before serving
	code := agentMain(ctx, args, env, &out, &errb)
	return code, out.String(), errb.String()
}

func TestAgentFlags(t *testing.T) {
	t.Parallel()

	t.Run("HelpExplainsEveryFlag", func(t *testing.T) {
		t.Parallel()
		code, out, _ := runCLI("agent", "--help")
		require.Equal(t, 0, code)
		require.Contains(t, out, "Usage: agentplane agent")
		for _, f := range []string{"platform", "workspace", "token", "listen", "url", "exec", "max-concurrent", "timeout",
			"max-output", "name", "description", "skill", "require-signature", "shutdown-grace", "log-format", "log-level"} {
			require.Contains(t, out, "--"+f+"  ("+agentEnvName(f)+",", f)
		}
		code, out, _ = runCLI("--help")
		require.Equal(t, 0, code)
		require.Contains(t, out, "agent     run the reference A2A agent")
	})

	t.Run("InvalidFlagsNamed", func(t *testing.T) {
		t.Parallel()
		code, _, errs := runAgentCLI([]string{}, "--platform", "ftp://x", "--workspace", "nope", "--max-concurrent", "0",
			"--listen", "nowhere", "--url", "http://u:p@host", "--log-format", "xml", "--timeout", "-1s")
		require.Equal(t, 2, code)
		for _, f := range []string{"--platform", "--token", "--workspace", "--max-concurrent", "--listen", "--url", "--log-format", "--timeout"} {
			require.Contains(t, errs, f+":")
		}
		code, _, errs = runAgentCLI([]string{}, "--require-signature")
		require.Equal(t, 2, code)
		require.Contains(t, errs, "--require-signature: needs --platform")
		code, _, errs = runAgentCLI([]string{}, "stray")
		require.Equal(t, 2, code)
		require.Contains(t, errs, `unexpected argument "stray"`)
	})

	t.Run("EnvironmentFillsFlags", func(t *testing.T) {
		t.Parallel()
		code, _, errs := runAgentCLI([]string{"AGENTPLANE_AGENT_PLATFORM=http://127.0.0.1:1", "AGENTPLANE_AGENT_MAX_CONCURRENT=zero"})
		require.Equal(t, 2, code)
		require.Contains(t, errs, "AGENTPLANE_AGENT_MAX_CONCURRENT")
		code, _, errs = runAgentCLI([]string{"AGENTPLANE_AGENT_PLATFORM=http://127.0.0.1:1"})
		require.Equal(t, 2, code)
		require.Contains(t, errs, "--token: required with --platform (or set AGENTPLANE_AGENT_TOKEN)")
		code, _, errs = runAgentCLI([]string{"AGENTPLANE_AGENT_LISTEN=bad"}, "--listen", "127.0.0.1:0", "--log-level", "loud")
		require.Equal(t, 2, code)
		require.NotContains(t, errs, "--listen", "the command line wins over the environment")
		require.Contains(t, errs, "--log-level")
	})

	t.Run("Skills", func(t *testing.T) {
		t.Parallel()
		var s skillList
		require.NoError(t, s.Set("Run audit: checks the repo\nSummarize"))
		require.NoError(t, s.Set("Ünïcode Tool!"))
		require.Equal(t, "run-audit", s[0].ID)
		require.Equal(t, "checks the repo", s[0].Description)
		require.Equal(t, "summarize", s[1].ID)
		require.Equal(t, "n-code-tool", s[2].ID)
		require.Error(t, s.Set(": no name"))
	})
}

const cliAdminToken = "cli-e2e-admin-token-0123456789"

// testPlatform is a real agentplane server on loopback with a 6 s
// heartbeat TTL (agents beat every 2 s).
type testPlatform struct{ base string }

func startTestPlatform(t *testing.T) *testPlatform {
	t.Helper()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg := config.Register(fs, config.ScopeServe)
	require.NoError(t, config.Parse(fs, []string{"--data-dir", t.TempDir(), "--admin-token", cliAdminToken,
		"--allow-private-agents", "--heartbeat-ttl", "6s", "--shutdown-grace", "5s"}, []string{}))
	require.NoError(t, cfg.Validate())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), app.Options{Listener: ln, Out: io.Discard})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("the platform did not stop")
		}
	})
	select {
	case <-a.Migrated():
	case <-time.After(30 * time.Second):
		t.Fatal("the platform did not start")
	}
	return &testPlatform{base: "http://" + a.Addr()}
}

func (p *testPlatform) call(t *testing.T, method, path string, body any, headers ...string) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		r = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, r)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+cliAdminToken)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	if out == nil {
		out = map[string]any{"raw": string(raw)}
	}
	return resp.StatusCode, out
}

func (p *testPlatform) workspace(t *testing.T, name string) (id, token string) {
	t.Helper()
	code, out := p.call(t, http.MethodPost, "/workspaces", map[string]any{"name": name})
	require.Equal(t, http.StatusCreated, code, out)
	return out["id"].(string), out["auth_token"].(string)
}

func (p *testPlatform) status(t *testing.T, id string) string {
	t.Helper()
	_, out := p.call(t, http.MethodGet, "/workspaces/"+id, nil)
	s, _ := out["status"].(string)
	return s
}

// send messages the workspace through the gateway (A2A 0.3) and returns the task.
func (p *testPlatform) send(t *testing.T, id, text string, blocking bool) map[string]any {
	t.Helper()
	code, out := p.call(t, http.MethodPost, "/workspaces/"+id+"/a2a", map[string]any{
		"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": map[string]any{
			"message":       map[string]any{"role": "user", "parts": []any{map[string]any{"kind": "text", "text": text}}},
			"configuration": map[string]any{"blocking": blocking},
		},
	})
	require.Equal(t, http.StatusOK, code, out)
	res, ok := out["result"].(map[string]any)
	require.True(t, ok, "no result: %v", out)
	return res
}

func taskStatus(task map[string]any) (string, string) {
	st := task["status"].(map[string]any)
	text := ""
	if m, ok := st["message"].(map[string]any); ok {
		text = m["parts"].([]any)[0].(map[string]any)["text"].(string)
	}
	return st["state"].(string), text
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuf collects a subprocess's stderr.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// agentProcess is `agentplane agent` running as a real process (this test
// binary re-run as the command, see TestMain).
type agentProcess struct {
	cmd    *exec.Cmd
	stderr *syncBuf
	done   chan error
}

func startAgentProcess(t *testing.T, token string, args ...string) *agentProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"agent", "--listen", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), "AGENTPLANE_TEST_RUN_MAIN=1", "AGENTPLANE_AGENT_TOKEN="+token)
	p := &agentProcess{cmd: cmd, stderr: &syncBuf{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	require.NoError(t, cmd.Start())
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		p.done <- nil
		if t.Failed() {
			t.Logf("agent stderr:\n%s", p.stderr.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *agentProcess) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	p.wait(t)
}

func (p *agentProcess) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-p.done:
		require.NoError(t, err, "exit status")
		p.done <- err
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not exit")
	}
}

// TestAgentCommandEndToEnd runs the built command against a real server.
func TestAgentCommandEndToEnd(t *testing.T) {
	t.Parallel()
	p := startTestPlatform(t)

	t.Run("EchoRegisterAnswerStop", func(t *testing.T) {
		t.Parallel()
		id, token := p.workspace(t, "CLI echo")
		proc := startAgentProcess(t, token, "--platform", p.base, "--workspace", id, "--name", "CLI echo agent", "--skill", "Echo: says it back")
		waitUntil(t, "online", func() bool { return p.status(t, id) == "online" })
		_, ws := p.call(t, http.MethodGet, "/workspaces/"+id, nil)
		card := ws["agent_card"].(map[string]any)
		require.Equal(t, "CLI echo agent", card["name"])
		require.Equal(t, "echo", card["skills"].([]any)[0].(map[string]any)["id"])

		state, text := taskStatus(p.send(t, id, "hi there", true))
		require.Equal(t, "completed", state)
		require.Equal(t, "echo: hi there", text)

		// Only the gateway may call the agent (--require-signature is on).
		resp, err := http.Post(ws["url"].(string), "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"id":"x"}}`))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

		proc.stop(t)
		waitUntil(t, "offline after the TTL", func() bool { return p.status(t, id) == "offline" })
		logs := proc.stderr.String()
		require.Contains(t, logs, "registered with the platform")
		require.NotContains(t, logs, token, "the token is never logged")
	})

	t.Run("ExecSuccessAndFailure", func(t *testing.T) {
		t.Parallel()
		id, token := p.workspace(t, "CLI exec")
		startAgentProcess(t, token, "--platform", p.base, "--exec", `if [ "$(cat)" = "fail" ]; then echo "bad input" >&2; exit 5; fi; echo "date: ok"; echo "uptime: ok"`)
		waitUntil(t, "online", func() bool { return p.status(t, id) == "online" })
		state, text := taskStatus(p.send(t, id, "run", true))
		require.Equal(t, "completed", state)
		require.Equal(t, "date: ok\nuptime: ok\n", text)
		state, text = taskStatus(p.send(t, id, "fail", true))
		require.Equal(t, "failed", state)
		require.Equal(t, "the command exited with status 5: bad input", text)
	})

	t.Run("SIGTERMFinishesRunningTasks", func(t *testing.T) {
		t.Parallel()
		fifo := filepath.Join(t.TempDir(), "go-on")
		require.NoError(t, syscall.Mkfifo(fifo, 0o600))
		id, token := p.workspace(t, "CLI drain")
		proc := startAgentProcess(t, token, "--platform", p.base, "--exec", "cat "+fifo+"; echo finished")
		waitUntil(t, "online", func() bool { return p.status(t, id) == "online" })
		state, _ := taskStatus(p.send(t, id, "long job", false))
		require.Equal(t, "working", state)
		waitUntil(t, "the heartbeat to count the task", func() bool {
			_, ws := p.call(t, http.MethodGet, "/workspaces/"+id, nil)
			return ws["active_tasks"] == float64(1)
		})

		require.NoError(t, proc.cmd.Process.Signal(syscall.SIGTERM))
		waitUntil(t, "the agent to log its shutdown", func() bool { return strings.Contains(proc.stderr.String(), "agent shutting down") })
		select {
		case err := <-proc.done:
			t.Fatalf("the agent exited (%v) while a task was running", err)
		default:
		}
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		require.NoError(t, err)
		_, _ = f.WriteString("payload\n")
		require.NoError(t, f.Close())
		proc.wait(t)

		code, rows := p.callList(t, "/workspaces/"+id+"/activity?type=task_update")
		require.Equal(t, 200, code)
		require.Len(t, rows, 1, "the finished task was reported before exit")
		require.Equal(t, "completed", rows[0]["status"])
		require.Contains(t, rows[0]["response_body"], "payload\\nfinished")
	})
}

func (p *testPlatform) callList(t *testing.T, path string) (int, []map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+cliAdminToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var rows []map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&rows))
	return resp.StatusCode, rows
}

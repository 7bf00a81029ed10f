package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/app"
	"github.com/agentplane/agentplane/internal/config"
	"github.com/agentplane/agentplane/pkg/agent"
	"github.com/stretchr/testify/require"
)

const e2eAdminToken = "e2e-admin-token-0123456789"

// platform is a real agentplane server on loopback: SQLite in a temp dir,
// private agent addresses allowed, a 6 s heartbeat TTL (agents beat every
// 2 s) so that "offline" comes within seconds.
type platform struct {
	base string
}

func startPlatform(t *testing.T) *platform {
	t.Helper()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg := config.Register(fs, config.ScopeServe)
	require.NoError(t, config.Parse(fs, []string{
		"--data-dir", t.TempDir(), "--admin-token", e2eAdminToken, "--allow-private-agents",
		"--heartbeat-ttl", "6s", "--shutdown-grace", "5s",
	}, []string{}))
	require.NoError(t, cfg.Validate())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, quietLogger(), app.Options{Listener: ln, Out: io.Discard})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(waitFor):
			t.Error("the platform did not stop")
		}
	})
	select {
	case <-a.Migrated():
	case <-time.After(waitFor):
		t.Fatal("the platform did not start")
	}
	return &platform{base: "http://" + a.Addr()}
}

// api calls the platform as admin.
func (p *platform) api(t *testing.T, method, path string, body any, headers ...string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if b, ok := body.([]byte); ok {
		r = bytes.NewReader(b)
	} else if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		r = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, r)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+e2eAdminToken)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out
}

func (p *platform) createWorkspace(t *testing.T, name string) (id, token string) {
	t.Helper()
	code, body := p.api(t, http.MethodPost, "/workspaces", obj{"name": name})
	require.Equal(t, http.StatusCreated, code, string(body))
	var out obj
	require.NoError(t, json.Unmarshal(body, &out))
	return out["id"].(string), out["auth_token"].(string)
}

func (p *platform) workspace(t *testing.T, id string) obj {
	t.Helper()
	code, body := p.api(t, http.MethodGet, "/workspaces/"+id, nil)
	require.Equal(t, http.StatusOK, code, string(body))
	var out obj
	require.NoError(t, json.Unmarshal(body, &out))
	return out
}

// a2a sends a JSON-RPC request through the gateway and decodes the answer.
func (p *platform) a2a(t *testing.T, id, v, meth string, params any) obj {
	t.Helper()
	body, err := json.Marshal(obj{"jsonrpc": "2.0", "id": "g-1", "method": meth, "params": params})
	require.NoError(t, err)
	var headers []string
	if v == "1.0" {
		headers = []string{"A2A-Version", "1.0"}
	}
	code, out := p.api(t, http.MethodPost, "/workspaces/"+id+"/a2a", body, headers...)
	require.Equal(t, http.StatusOK, code, string(out))
	var resp obj
	require.NoError(t, json.Unmarshal(out, &resp))
	return resp
}

// runAgent serves a pkg/agent agent for workspace token until the returned
// stop is called.
func runAgent(t *testing.T, p *platform, token string, h agent.Handler) (a *agent.Agent, url string, stop func()) {
	t.Helper()
	return runAgentOn(t, p, agent.Options{Token: token, Handler: h}, nil)
}

// runAgentOn is runAgent with more options (Platform, RequireSignature and
// Logger are set here) and, unless wrap is nil, the agent's listener
// wrapped.
func runAgentOn(t *testing.T, p *platform, o agent.Options, wrap func(net.Listener) net.Listener) (a *agent.Agent, url string, stop func()) {
	t.Helper()
	o.Platform, o.RequireSignature, o.Logger = p.base, true, quietLogger()
	a, err := agent.New(o)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	if wrap != nil {
		ln = wrap(ln)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(waitFor):
			t.Error("the agent did not stop")
		}
	}
	t.Cleanup(stop)
	return a, "http://" + ln.Addr().String(), stop
}

// TestEndToEnd runs pkg/agent against a real agentplane server.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	p := startPlatform(t)

	t.Run("EchoThroughTheGateway", func(t *testing.T) {
		t.Parallel()
		id, token := p.createWorkspace(t, "Echo")
		require.Equal(t, "awaiting_agent", p.workspace(t, id)["status"])
		a, agentURL, stop := runAgent(t, p, token, agent.Echo{})
		eventually(t, "the workspace to come online", func() bool { return p.workspace(t, id)["status"] == "online" })
		ws := p.workspace(t, id)
		require.Equal(t, agentURL, ws["url"])
		require.Equal(t, "agentplane agent", ws["agent_card"].(obj)["name"])
		require.Equal(t, id, a.Status().WorkspaceID)

		resp := p.a2a(t, id, "0.3", "message/send", obj{"message": message("0.3", "hello")})
		task := sendTask(t, "0.3", resp)
		require.Equal(t, "completed", state(task))
		require.Equal(t, "echo: hello", statusText(t, task))

		resp = p.a2a(t, id, "1.0", "SendMessage", obj{"message": message("1.0", "bonjour")})
		task = sendTask(t, "1.0", resp)
		require.Equal(t, "TASK_STATE_COMPLETED", state(task))
		require.Equal(t, "echo: bonjour", statusText(t, task))

		// Streaming passes through the gateway event by event.
		body, _ := json.Marshal(obj{"jsonrpc": "2.0", "id": 3, "method": "SendStreamingMessage", "params": obj{"message": message("1.0", "flow")}})
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/workspaces/"+id+"/a2a", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+e2eAdminToken)
		req.Header.Set("A2A-Version", "1.0")
		sresp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var kinds []string
		sc := bufio.NewScanner(sresp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var ev obj
				require.NoError(t, json.Unmarshal([]byte(data), &ev))
				for k := range result(t, ev) {
					kinds = append(kinds, k)
				}
			}
		}
		sresp.Body.Close()
		require.Equal(t, []string{"task", "statusUpdate", "artifactUpdate", "statusUpdate"}, kinds)

		// The agent accepts only the gateway's signed requests.
		code, direct := postRaw(t, agentURL, "0.3", mustJSON(t, obj{"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": obj{"message": message("0.3", "sneaky")}}))
		require.Equal(t, http.StatusUnauthorized, code)
		ecode, _ := rpcError(t, direct)
		require.Equal(t, agent.CodeUnauthenticated, ecode)

		// Finished tasks reach the activity log as the workspace itself.
		eventually(t, "three task_update rows", func() bool {
			code, body := p.api(t, http.MethodGet, "/workspaces/"+id+"/activity?type=task_update", nil)
			var rows []obj
			return code == 200 && json.Unmarshal(body, &rows) == nil && len(rows) == 3
		})
		_, rowsJSON := p.api(t, http.MethodGet, "/workspaces/"+id+"/activity?type=task_update", nil)
		var rows []obj
		require.NoError(t, json.Unmarshal(rowsJSON, &rows))
		for _, r := range rows {
			require.Equal(t, id, r["source_id"])
			require.Equal(t, "completed", r["status"])
			require.Contains(t, r["summary"], "caller admin", "the gateway's signature named the caller")
		}

		code, logJSON := p.api(t, http.MethodGet, "/workspaces/"+id+"/activity?type=agent_log", nil)
		require.Equal(t, 200, code)
		require.NoError(t, json.Unmarshal(logJSON, &rows))
		require.Len(t, rows, 1, "one start record")
		require.Contains(t, rows[0]["summary"], "started at "+agentURL)

		// A stopped agent goes offline after the heartbeat TTL.
		stop()
		eventually(t, "the workspace to go offline", func() bool { return p.workspace(t, id)["status"] == "offline" })
	})

	t.Run("FailingCommand", func(t *testing.T) {
		t.Parallel()
		id, token := p.createWorkspace(t, "Failing")
		runAgent(t, p, token, &agent.Exec{Command: "echo 'the disk is full' >&2; exit 4"})
		eventually(t, "the workspace to come online", func() bool { return p.workspace(t, id)["status"] == "online" })
		resp := p.a2a(t, id, "0.3", "message/send", obj{"message": message("0.3", "run")})
		task := sendTask(t, "0.3", resp)
		require.Equal(t, "failed", state(task))
		require.Equal(t, "the command exited with status 4: the disk is full", statusText(t, task))
		// The failure shows in the next heartbeat: error rate 1 → degraded.
		eventually(t, "the workspace to be degraded", func() bool { return p.workspace(t, id)["status"] == "degraded" })
		ws := p.workspace(t, id)
		require.Equal(t, 1.0, ws["last_error_rate"])
		require.Contains(t, ws["last_sample_error"], "the disk is full")
	})

	t.Run("HeartbeatsCarryActiveTasks", func(t *testing.T) {
		t.Parallel()
		id, token := p.createWorkspace(t, "Busy")
		g := newGate()
		runAgent(t, p, token, g)
		t.Cleanup(g.open) // runs before the agent's stop
		eventually(t, "the workspace to come online", func() bool { return p.workspace(t, id)["status"] == "online" })
		resp := p.a2a(t, id, "0.3", "message/send", obj{"message": message("0.3", "hold the line"), "configuration": obj{"blocking": false}})
		require.Equal(t, "working", state(sendTask(t, "0.3", resp)))
		g.awaitStarted(t, "hold the line")
		eventually(t, "a heartbeat with the running task", func() bool {
			ws := p.workspace(t, id)
			return ws["active_tasks"] == float64(1) && ws["current_task"] == "hold the line"
		})
		g.open()
		eventually(t, "a heartbeat after the task", func() bool { return p.workspace(t, id)["active_tasks"] == float64(0) })
	})

	t.Run("GatewayCapacityMatchesTheAgent", func(t *testing.T) {
		t.Parallel()
		// The workspace's slots equal the agent's MaxConcurrent: the gateway
		// refuses the call the agent could not take, before it reaches it.
		code, body := p.api(t, http.MethodPost, "/workspaces", obj{"name": "Capacity", "max_concurrent_tasks": 2})
		require.Equal(t, http.StatusCreated, code, string(body))
		var created obj
		require.NoError(t, json.Unmarshal(body, &created))
		id, token := created["id"].(string), created["auth_token"].(string)
		require.Equal(t, float64(2), created["workspace"].(obj)["max_concurrent_tasks"])

		g := newGate()
		tap := &wireTap{}
		a, _, _ := runAgentOn(t, p, agent.Options{Token: token, Handler: g, MaxConcurrent: 2}, tap.wrap)
		t.Cleanup(g.open) // runs before the agent's stop
		eventually(t, "the workspace to come online", func() bool { return p.workspace(t, id)["status"] == "online" })

		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		held := make(chan gatewayAnswer, 2)
		for i, text := range []string{"hold one", "hold two"} {
			go func() { held <- p.send(ctx, id, i+1, text) }()
		}
		var started []string
		for range 2 {
			select {
			case text := <-g.started:
				started = append(started, text)
			case <-time.After(waitFor):
				t.Fatalf("only %v reached the agent", started)
			}
		}
		require.ElementsMatch(t, []string{"hold one", "hold two"}, started, "both calls reach the agent")
		require.Equal(t, 2, a.Status().ActiveTasks)
		// The leases are stored before the calls are forwarded.
		require.Equal(t, 2, p.inflight(t, id), "GET /workspaces counts both calls in flight")

		// A third call with no queue wait: the gateway's busy answer.
		const refused = "third, refused at the gateway"
		busy := p.send(ctx, id, 3, refused, "X-Queue-Timeout", "0")
		require.NoError(t, busy.err)
		require.Equal(t, http.StatusServiceUnavailable, busy.code, string(busy.body))
		require.Equal(t, "2", busy.header.Get("Retry-After"))
		var e struct {
			ID    int
			Error struct {
				Code int
				Data struct {
					Reason             string
					MaxConcurrentTasks int `json:"max_concurrent_tasks"`
				}
			}
		}
		require.NoError(t, json.Unmarshal(busy.body, &e), string(busy.body))
		require.Equal(t, 3, e.ID, "the error echoes the request id")
		require.Equal(t, -32000, e.Error.Code)
		require.Equal(t, "AGENT_BUSY", e.Error.Data.Reason)
		require.Equal(t, 2, e.Error.Data.MaxConcurrentTasks, "the gateway's answer (the agent's own 0.3 refusal has no data)")

		// The agent never saw it: its handler did not run, its socket never
		// carried the message, and the platform recorded the refusal as its
		// own ("busy", not the agent's "agent_busy").
		select {
		case text := <-g.started:
			t.Fatalf("%q reached the agent's handler", text)
		default:
		}
		require.True(t, tap.saw("hold one"), "the tap sees what the agent reads")
		require.False(t, tap.saw(refused), "the refused message reached the agent's socket")
		require.Equal(t, map[string]int{"busy": 1}, p.callStatuses(t, id))
		require.Equal(t, 2, a.Status().ActiveTasks)

		// Released, both held calls complete, and their slots are free by
		// the time their callers have the answers.
		g.open()
		for range 2 {
			select {
			case r := <-held:
				require.NoError(t, r.err)
				require.Equal(t, http.StatusOK, r.code, string(r.body))
				task := sendTask(t, "0.3", decodeObj(t, r.body))
				require.Equal(t, "completed", state(task))
				require.Contains(t, []string{"echo: hold one", "echo: hold two"}, statusText(t, task))
			case <-time.After(waitFor):
				t.Fatal("a held call did not return after the release")
			}
		}
		require.Equal(t, 0, p.inflight(t, id))

		// The agent is still healthy: a fourth call, again with no queue
		// wait, goes through; it is the next task the handler sees.
		const fourth = "fourth, after the release"
		r := p.send(ctx, id, 4, fourth, "X-Queue-Timeout", "0")
		require.NoError(t, r.err)
		require.Equal(t, http.StatusOK, r.code, string(r.body))
		task := sendTask(t, "0.3", decodeObj(t, r.body))
		require.Equal(t, "completed", state(task))
		require.Equal(t, "echo: "+fourth, statusText(t, task))
		g.awaitStarted(t, fourth)
		require.True(t, tap.saw(fourth))
		require.False(t, tap.saw(refused))
		require.Equal(t, map[string]int{"ok": 3, "busy": 1}, p.callStatuses(t, id))
		require.Equal(t, "online", p.workspace(t, id)["status"])
	})
}

// gatewayAnswer is the raw answer to a call through the gateway.
type gatewayAnswer struct {
	code   int
	header http.Header
	body   []byte
	err    error
}

// send posts a 0.3 message/send with text through the gateway as admin. It
// does not use t, so that it may run on other goroutines.
func (p *platform) send(ctx context.Context, id string, rpcID int, text string, headers ...string) gatewayAnswer {
	body, err := json.Marshal(obj{"jsonrpc": "2.0", "id": rpcID, "method": "message/send", "params": obj{"message": message("0.3", text)}})
	if err != nil {
		return gatewayAnswer{err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/workspaces/"+id+"/a2a", bytes.NewReader(body))
	if err != nil {
		return gatewayAnswer{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+e2eAdminToken)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return gatewayAnswer{err: err}
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return gatewayAnswer{code: resp.StatusCode, header: resp.Header, body: out, err: err}
}

// inflight is the workspace's "inflight" in GET /workspaces.
func (p *platform) inflight(t *testing.T, id string) int {
	t.Helper()
	code, body := p.api(t, http.MethodGet, "/workspaces", nil)
	require.Equal(t, http.StatusOK, code, string(body))
	var list []obj
	require.NoError(t, json.Unmarshal(body, &list))
	for _, w := range list {
		if w["id"] == id {
			n, ok := w["inflight"].(float64)
			require.True(t, ok, "no inflight in %v", w)
			return int(n)
		}
	}
	t.Fatalf("workspace %s not listed", id)
	return 0
}

// callStatuses counts the workspace's a2a_receive rows by status.
func (p *platform) callStatuses(t *testing.T, id string) map[string]int {
	t.Helper()
	code, body := p.api(t, http.MethodGet, "/workspaces/"+id+"/activity?type=a2a_receive", nil)
	require.Equal(t, http.StatusOK, code, string(body))
	var rows []obj
	require.NoError(t, json.Unmarshal(body, &rows))
	out := map[string]int{}
	for _, r := range rows {
		out[r["status"].(string)]++
	}
	return out
}

func decodeObj(t *testing.T, b []byte) obj {
	t.Helper()
	var out obj
	require.NoError(t, json.Unmarshal(b, &out), string(b))
	return out
}

// wireTap records every byte an agent's listener reads, connection by
// connection, so that a test can tell whether a message reached the agent
// at all.
type wireTap struct {
	mu    sync.Mutex
	conns []*syncBuffer
}

func (w *wireTap) wrap(ln net.Listener) net.Listener { return &tapListener{Listener: ln, tap: w} }

// saw reports whether s was read on any one connection.
func (w *wireTap) saw(s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.conns {
		if strings.Contains(c.String(), s) {
			return true
		}
	}
	return false
}

type tapListener struct {
	net.Listener
	tap *wireTap
}

func (l *tapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	rec := &syncBuffer{}
	l.tap.mu.Lock()
	l.tap.conns = append(l.tap.conns, rec)
	l.tap.mu.Unlock()
	return &tapConn{Conn: c, rec: rec}, nil
}

type tapConn struct {
	net.Conn
	rec *syncBuffer
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	_, _ = c.rec.Write(p[:n])
	return n, err
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

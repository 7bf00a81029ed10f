package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentplane/agentplane/pkg/agent"
	"github.com/stretchr/testify/require"
)

// waitFor is how long a test waits for a state before failing; it bounds
// every loop, it is not an expectation of speed.
const waitFor = 30 * time.Second

// obj is a decoded JSON object.
type obj = map[string]any

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testBundle is an agent behind an httptest server.
type testBundle struct {
	agent *agent.Agent
	srv   *httptest.Server
	gate  *gate
}

// setup starts an agent whose handler is a gate (see gate), unless o sets
// another handler.
func setup(t *testing.T, o agent.Options) *testBundle {
	t.Helper()
	g := newGate()
	if o.Handler == nil {
		o.Handler = g
	}
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	a, err := agent.New(o)
	require.NoError(t, err)
	srv := httptest.NewServer(a)
	t.Cleanup(func() {
		g.open()
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		srv.Close()
		_ = a.Shutdown(ctx)
	})
	return &testBundle{agent: a, srv: srv, gate: g}
}

// gate is a handler that announces each task on started and then waits
// until its text's release is called (or the gate is opened): it echoes
// the text, or fails when the text starts with "fail".
type gate struct {
	started chan string
	opened  chan struct{}
	release chan string
}

func newGate() *gate {
	return &gate{started: make(chan string, 100), opened: make(chan struct{}), release: make(chan string, 100)}
}

func (g *gate) open() {
	select {
	case <-g.opened:
	default:
		close(g.opened)
	}
}

func (g *gate) Handle(ctx context.Context, req *agent.Request, out *agent.Emitter) error {
	text := req.Text()
	g.started <- text
	if strings.HasPrefix(text, "hold") {
		select {
		case <-g.opened:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if strings.HasPrefix(text, "fail") {
		return &agent.ExitError{Code: 2, Stderr: "it failed: " + text}
	}
	_, err := out.WriteString("echo: " + text)
	return err
}

// awaitStarted waits until the gate saw a task with text.
func (g *gate) awaitStarted(t *testing.T, text string) {
	t.Helper()
	select {
	case got := <-g.started:
		require.Equal(t, text, got)
	case <-time.After(waitFor):
		t.Fatalf("task %q did not start", text)
	}
}

// message builds the params message for version v with one text part.
func message(v, text string) obj {
	if v == "1.0" {
		return obj{"messageId": "m-" + text, "role": "ROLE_USER", "parts": []obj{{"text": text}}}
	}
	return obj{"kind": "message", "messageId": "m-" + text, "role": "user", "parts": []obj{{"kind": "text", "text": text}}}
}

// method names the A2A method op ("send", "stream", "get", "cancel") in version v.
func method(v, op string) string {
	names := map[string][2]string{
		"send": {"message/send", "SendMessage"}, "stream": {"message/stream", "SendStreamingMessage"},
		"get": {"tasks/get", "GetTask"}, "cancel": {"tasks/cancel", "CancelTask"},
	}
	if v == "1.0" {
		return names[op][1]
	}
	return names[op][0]
}

// post sends a JSON-RPC request in version v and decodes the JSON answer.
func post(t *testing.T, url, v, meth string, params any, headers ...string) (int, obj) {
	t.Helper()
	body, err := json.Marshal(obj{"jsonrpc": "2.0", "id": "req-1", "method": meth, "params": params})
	require.NoError(t, err)
	return postRaw(t, url, v, body, headers...)
}

func postRaw(t *testing.T, url, v string, body []byte, headers ...string) (int, obj) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if v == "1.0" {
		req.Header.Set("A2A-Version", "1.0")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	require.NoError(t, err)
	defer resp.Body.Close()
	var out obj
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return resp.StatusCode, out
}

// stream sends a streaming request and returns the data of every SSE event.
func stream(t *testing.T, url, v string, params any) []obj {
	t.Helper()
	body, err := json.Marshal(obj{"jsonrpc": "2.0", "id": 7, "method": method(v, "stream"), "params": params})
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	require.NoError(t, err)
	if v == "1.0" {
		req.Header.Set("A2A-Version", "1.0")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	var events []obj
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			var ev obj
			require.NoError(t, json.Unmarshal([]byte(data), &ev))
			require.Equal(t, float64(7), ev["id"], "every event echoes the request id")
			events = append(events, ev)
		}
	}
	require.NoError(t, sc.Err())
	return events
}

// result returns the JSON-RPC result, failing on an error answer.
func result(t *testing.T, resp obj) obj {
	t.Helper()
	require.Nil(t, resp["error"], "unexpected error answer: %v", resp["error"])
	r, ok := resp["result"].(obj)
	require.True(t, ok, "no result object in %v", resp)
	return r
}

// rpcError returns the JSON-RPC error's code and message.
func rpcError(t *testing.T, resp obj) (int, string) {
	t.Helper()
	e, ok := resp["error"].(obj)
	require.True(t, ok, "want an error answer, got %v", resp)
	return int(e["code"].(float64)), e["message"].(string)
}

// sendTask unwraps the task of a send answer: bare in 0.3, {"task": …} in 1.0.
func sendTask(t *testing.T, v string, resp obj) obj {
	t.Helper()
	r := result(t, resp)
	if v == "1.0" {
		require.NotContains(t, r, "kind")
		task, ok := r["task"].(obj)
		require.True(t, ok, "1.0 wraps the task: %v", r)
		return task
	}
	require.Equal(t, "task", r["kind"])
	return r
}

func state(task obj) string { return task["status"].(obj)["state"].(string) }

// statusText is the text of a task's status message.
func statusText(t *testing.T, task obj) string {
	t.Helper()
	msg, ok := task["status"].(obj)["message"].(obj)
	require.True(t, ok, "no status message in %v", task)
	return msg["parts"].([]any)[0].(obj)["text"].(string)
}

// wantState spells a 0.3 state in version v.
func wantState(v, s string) string {
	if v == "1.0" {
		return "TASK_STATE_" + strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
	}
	return s
}

// eventually polls cond until it holds, failing after waitFor.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

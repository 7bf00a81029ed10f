package agent_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentplane/agentplane/pkg/agent"
	"github.com/agentplane/agentplane/pkg/callersig"
	"github.com/stretchr/testify/require"
)

const (
	fakeToken       = "apw_test-token"
	fakeWorkspaceID = "0190f5d2-8a4b-7c3e-9f1a-2b3c4d5e6f70"
)

var fakeSecret = []byte("fake-platform-secret-0123456789ab")

// fakePlatform records what an agent sends to the registry and activity
// routes. registerStatus and heartbeatStatus, when non-zero, are the
// statuses of the next answers (each used once, except 410).
type fakePlatform struct {
	srv *httptest.Server

	mu         sync.Mutex
	registers  []obj
	heartbeats []obj
	activity   []obj
	unauthed   int

	registerStatus  atomic.Int32
	heartbeatStatus atomic.Int32
}

func newFakePlatform(t *testing.T) *fakePlatform {
	t.Helper()
	p := &fakePlatform{}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *fakePlatform) serve(w http.ResponseWriter, r *http.Request) {
	var body obj
	_ = json.NewDecoder(r.Body).Decode(&body)
	w.Header().Set("Content-Type", "application/json")
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+fakeToken {
		p.unauthed++
		w.WriteHeader(401)
		_, _ = w.Write([]byte(`{"error":"invalid token"}`))
		return
	}
	next := func(v *atomic.Int32) int {
		s := int(v.Load())
		if s != 0 && s != 410 {
			v.Store(0)
		}
		return s
	}
	switch r.URL.Path {
	case "/registry/register":
		if s := next(&p.registerStatus); s != 0 {
			w.WriteHeader(s)
			_, _ = w.Write([]byte(`{"error":"not now"}`))
			return
		}
		p.registers = append(p.registers, body)
		_ = json.NewEncoder(w).Encode(obj{
			"status": "registered", "workspace_id": fakeWorkspaceID, "workspace_status": "online",
			"heartbeat_interval_seconds": 1, "caller_secret": base64.RawURLEncoding.EncodeToString(fakeSecret),
		})
	case "/registry/heartbeat":
		if s := next(&p.heartbeatStatus); s != 0 {
			w.WriteHeader(s)
			_, _ = w.Write([]byte(`{"error":"heartbeat refused"}`))
			return
		}
		p.heartbeats = append(p.heartbeats, body)
		_ = json.NewEncoder(w).Encode(obj{"status": "ok", "workspace_status": "online", "heartbeat_interval_seconds": 1})
	case "/workspaces/" + fakeWorkspaceID + "/activity":
		p.activity = append(p.activity, body)
		_, _ = w.Write([]byte(`{"status":"logged"}`))
	default:
		w.WriteHeader(404)
		_, _ = w.Write([]byte(`{"error":"no such route"}`))
	}
}

func (p *fakePlatform) counts() (registers, heartbeats, activity int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.registers), len(p.heartbeats), len(p.activity)
}

// lastHeartbeat returns the newest heartbeat body (nil before the first).
func (p *fakePlatform) lastHeartbeat() obj {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.heartbeats) == 0 {
		return nil
	}
	return p.heartbeats[len(p.heartbeats)-1]
}

func (p *fakePlatform) activityOf(kind string) []obj {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []obj
	for _, a := range p.activity {
		if a["activity_type"] == kind {
			out = append(out, a)
		}
	}
	return out
}

// served is an agent running Serve against a fake platform.
type served struct {
	agent    *agent.Agent
	url      string
	gate     *gate
	platform *fakePlatform
	done     chan error
	cancel   context.CancelFunc
}

func serveWithPlatform(t *testing.T, o agent.Options) *served {
	t.Helper()
	p := newFakePlatform(t)
	g := newGate()
	if o.Handler == nil {
		o.Handler = g
	}
	o.Platform, o.Token, o.Logger = p.srv.URL, fakeToken, quietLogger()
	a, err := agent.New(o)
	require.NoError(t, err)
	agent.SetBeatUnit(a, 5*time.Millisecond)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{agent: a, url: "http://" + ln.Addr().String(), gate: g, platform: p, done: make(chan error, 1), cancel: cancel}
	go func() { s.done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		g.open()
		cancel()
		select {
		case <-s.done:
		case <-time.After(waitFor):
			t.Error("Serve did not return")
		}
	})
	return s
}

// signed posts a JSON-RPC request signed as the platform's gateway would.
func signed(t *testing.T, url, meth string, params any) obj {
	t.Helper()
	body, err := json.Marshal(obj{"jsonrpc": "2.0", "id": 1, "method": meth, "params": params})
	require.NoError(t, err)
	_, resp := postRaw(t, url, "0.3", body, callersig.Header, callersig.Sign(fakeSecret, "admin", body, time.Now()))
	return resp
}

func TestPlatformRegistrationAndHeartbeats(t *testing.T) {
	t.Parallel()
	s := serveWithPlatform(t, agent.Options{Name: "Tester", RequireSignature: true})
	p := s.platform
	eventually(t, "the registration", func() bool { return s.agent.Status().Registered })
	p.mu.Lock()
	reg := p.registers[0]
	p.mu.Unlock()
	require.Equal(t, s.url, reg["url"])
	require.NotContains(t, reg, "id", "without a configured workspace the token alone identifies it")
	card := reg["agent_card"].(obj)
	require.Equal(t, "Tester", card["name"])
	require.Len(t, card["supportedInterfaces"], 2)
	require.Equal(t, fakeWorkspaceID, s.agent.Status().WorkspaceID)
	require.Zero(t, p.unauthed)

	// The secret from the registration verifies the gateway's signature.
	task := signed(t, s.url, "message/send", obj{"message": message("0.3", "hold on"), "configuration": obj{"blocking": false}})
	id := result(t, task)["id"].(string)
	s.gate.awaitStarted(t, "hold on")

	// Heartbeats go on while the task runs, each with the real count.
	_, before, _ := p.counts()
	eventually(t, "three heartbeats during the task", func() bool {
		_, n, _ := p.counts()
		hb := p.lastHeartbeat()
		return n >= before+3 && hb["active_tasks"] == float64(1)
	})
	hb := p.lastHeartbeat()
	require.Equal(t, "hold on", hb["current_task"])
	require.Equal(t, fakeWorkspaceID, hb["workspace_id"])
	require.Contains(t, hb, "uptime_seconds")
	require.Equal(t, float64(0), hb["error_rate"])

	s.gate.open()
	eventually(t, "a heartbeat after the task", func() bool {
		hb := p.lastHeartbeat()
		return hb["active_tasks"] == float64(0) && hb["current_task"] == ""
	})
	resp := signed(t, s.url, "message/send", obj{"message": message("0.3", "fail hard")})
	require.Equal(t, "failed", state(result(t, resp)))
	eventually(t, "the error rate in a heartbeat", func() bool { return p.lastHeartbeat()["error_rate"] == 0.5 })
	require.Contains(t, p.lastHeartbeat()["sample_error"], "it failed: fail hard")

	eventually(t, "two task_update activity records", func() bool { return len(p.activityOf("task_update")) == 2 })
	updates := p.activityOf("task_update")
	byStatus := map[string]obj{}
	for _, u := range updates {
		require.Equal(t, fakeWorkspaceID, u["source_id"])
		require.Equal(t, "message/send", u["method"])
		byStatus[u["status"].(string)] = u
	}
	require.Contains(t, byStatus["completed"]["summary"], id)
	require.Contains(t, byStatus["completed"]["summary"], "caller admin")
	require.Equal(t, "echo: hold on", byStatus["completed"]["response_body"].(obj)["text"])
	require.Contains(t, byStatus["failed"]["error_detail"], "it failed")
	require.Len(t, p.activityOf("agent_log"), 1, "one start record")
}

func TestPlatformAnswers(t *testing.T) {
	t.Parallel()

	t.Run("HeartbeatNotFoundRegistersAgain", func(t *testing.T) {
		t.Parallel()
		s := serveWithPlatform(t, agent.Options{})
		eventually(t, "a heartbeat", func() bool { _, n, _ := s.platform.counts(); return n > 0 })
		s.platform.heartbeatStatus.Store(404)
		eventually(t, "a second registration", func() bool { n, _, _ := s.platform.counts(); return n == 2 })
	})

	t.Run("HeartbeatGoneStopsTheAgent", func(t *testing.T) {
		t.Parallel()
		s := serveWithPlatform(t, agent.Options{})
		eventually(t, "a heartbeat", func() bool { _, n, _ := s.platform.counts(); return n > 0 })
		s.platform.heartbeatStatus.Store(410)
		select {
		case err := <-s.done:
			require.ErrorIs(t, err, agent.ErrRemoved)
			s.done <- err
		case <-time.After(waitFor):
			t.Fatal("Serve did not stop after 410")
		}
	})

	t.Run("RegisterGoneStopsTheAgent", func(t *testing.T) {
		t.Parallel()
		p := newFakePlatform(t)
		p.registerStatus.Store(410)
		a, err := agent.New(agent.Options{Handler: agent.Echo{}, Platform: p.srv.URL, Token: fakeToken, Logger: quietLogger()})
		require.NoError(t, err)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		require.ErrorIs(t, a.Serve(ctx, ln), agent.ErrRemoved)
	})

	t.Run("RegistrationRetriedUntilItWorks", func(t *testing.T) {
		t.Parallel()
		p := newFakePlatform(t)
		p.registerStatus.Store(503)
		a, err := agent.New(agent.Options{Handler: agent.Echo{}, Platform: p.srv.URL, Token: fakeToken, Logger: quietLogger()})
		require.NoError(t, err)
		agent.SetBeatUnit(a, 5*time.Millisecond)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Serve(ctx, ln) }()
		eventually(t, "the registration", func() bool { return a.Status().Registered })
		cancel()
		require.NoError(t, <-done)
	})

	t.Run("WrongTokenKeepsRetrying", func(t *testing.T) {
		t.Parallel()
		p := newFakePlatform(t)
		a, err := agent.New(agent.Options{Handler: agent.Echo{}, Platform: p.srv.URL, Token: "apw_wrong", Logger: quietLogger()})
		require.NoError(t, err)
		agent.SetBeatUnit(a, time.Millisecond)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Serve(ctx, ln) }()
		eventually(t, "two refused attempts", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.unauthed >= 2 })
		require.False(t, a.Status().Registered)
		cancel()
		require.NoError(t, <-done)
	})
}

func TestShutdownFinishesRunningTasks(t *testing.T) {
	t.Parallel()
	s := serveWithPlatform(t, agent.Options{})
	eventually(t, "the registration", func() bool { return s.agent.Status().Registered })

	// One blocking caller waits on its connection; one task runs detached.
	blocking := make(chan obj, 1)
	go func() {
		body, _ := json.Marshal(obj{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": obj{"message": message("1.0", "hold blocking")}})
		req, _ := http.NewRequest(http.MethodPost, s.url, bytes.NewReader(body))
		req.Header.Set("A2A-Version", "1.0")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			blocking <- obj{"transport_error": err.Error()}
			return
		}
		defer resp.Body.Close()
		var out obj
		_ = json.NewDecoder(resp.Body).Decode(&out)
		blocking <- out
	}()
	s.gate.awaitStarted(t, "hold blocking")
	resp := signed(t, s.url, "message/send", obj{"message": message("0.3", "hold detached"), "configuration": obj{"blocking": false}})
	detachedID := result(t, resp)["id"].(string)
	s.gate.awaitStarted(t, "hold detached")

	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		shutdown <- s.agent.Shutdown(ctx)
	}()
	// New connections are refused once the listener closes.
	eventually(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.url, "http://"), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	// New tasks are refused by an agent that is shutting down.
	rec := httptest.NewRecorder()
	s.agent.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(
		`{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"messageId":"m","parts":[{"kind":"text","text":"late"}]}}}`)))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
	var late obj
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &late))
	code, msg := rpcError(t, late)
	require.Equal(t, agent.CodeBusy, code)
	require.Contains(t, msg, "shutting down")

	// Heartbeats go on while the tasks drain.
	_, before, _ := s.platform.counts()
	eventually(t, "heartbeats during the drain", func() bool { _, n, _ := s.platform.counts(); return n >= before+2 })
	require.Equal(t, float64(2), s.platform.lastHeartbeat()["active_tasks"])
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned (%v) while tasks were running", err)
	default:
	}

	s.gate.open()
	require.NoError(t, <-shutdown)
	out := <-blocking
	task := sendTask(t, "1.0", out)
	require.Equal(t, "TASK_STATE_COMPLETED", state(task), "the in-flight blocking caller got its answer")
	require.Equal(t, "echo: hold blocking", statusText(t, task))
	require.Zero(t, s.agent.Status().ActiveTasks)

	rec = httptest.NewRecorder()
	s.agent.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(
		`{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"id":"`+detachedID+`"}}`)))
	var got obj
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
	require.Equal(t, "completed", state(result(t, got)), "the detached task finished too")

	eventually(t, "both task records sent before the end", func() bool { return len(s.platform.activityOf("task_update")) == 2 })
	select {
	case err := <-s.done:
		require.NoError(t, err)
		s.done <- err
	case <-time.After(waitFor):
		t.Fatal("Serve did not return after Shutdown")
	}
}

func TestShutdownOutOfTimeCancelsTasks(t *testing.T) {
	t.Parallel()
	b := setup(t, agent.Options{})
	_, resp := post(t, b.srv.URL, "0.3", "message/send", obj{"message": message("0.3", "hold stuck"), "configuration": obj{"blocking": false}})
	id := sendTask(t, "0.3", resp)["id"].(string)
	b.gate.awaitStarted(t, "hold stuck")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, b.agent.Shutdown(ctx), context.Canceled)
	eventually(t, "the task to be cancelled", func() bool { return b.agent.Status().ActiveTasks == 0 })
	_, resp = post(t, b.srv.URL, "0.3", "tasks/get", obj{"id": id})
	require.Equal(t, "canceled", state(result(t, resp)))
}

func TestShutdownIdempotentAndBeforeServe(t *testing.T) {
	t.Parallel()
	a, err := agent.New(agent.Options{Handler: agent.Echo{}, Logger: quietLogger()})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.NoError(t, a.Shutdown(ctx))
	require.NoError(t, a.Shutdown(ctx))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	require.ErrorIs(t, a.Serve(ctx, ln), agent.ErrClosed)
}

func TestServeTwice(t *testing.T) {
	t.Parallel()
	s := serveWithPlatform(t, agent.Options{})
	eventually(t, "the first Serve to run", func() bool { return s.agent.Status().Registered })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	err = s.agent.Serve(ctx, ln)
	require.True(t, errors.Is(err, agent.ErrServing), "%v", err)
}

// TestNoSecretsInLogs: the token and the caller secret never reach the log.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	p := newFakePlatform(t)
	a, err := agent.New(agent.Options{Handler: agent.Echo{}, Platform: p.srv.URL, Token: fakeToken, Logger: newTextLogger(&buf)})
	require.NoError(t, err)
	agent.SetBeatUnit(a, 5*time.Millisecond)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	eventually(t, "a heartbeat", func() bool { _, n, _ := p.counts(); return n > 0 })
	signed(t, "http://"+ln.Addr().String(), "message/send", obj{"message": message("0.3", "x")})
	cancel()
	require.NoError(t, <-done)
	logs := buf.String()
	require.Contains(t, logs, "registered with the platform")
	require.NotContains(t, logs, fakeToken)
	require.NotContains(t, logs, base64.RawURLEncoding.EncodeToString(fakeSecret))
}

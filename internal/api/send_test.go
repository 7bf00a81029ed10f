package api

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/gateway"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/pkg/callersig"
	"github.com/stretchr/testify/require"
)

// scriptedAgent answers each JSON-RPC request with reply(method, params) and
// records what it got.
type scriptedAgent struct {
	srv   *httptest.Server
	mu    sync.Mutex
	reqs  []scriptedReq
	reply func(method string, params map[string]any) string
}

type scriptedReq struct {
	header http.Header
	body   []byte
	method string
	params map[string]any
}

func newScriptedAgent(t *testing.T, reply func(method string, params map[string]any) string) *scriptedAgent {
	t.Helper()
	a := &scriptedAgent{reply: reply}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var env struct {
			ID     json.RawMessage
			Method string
			Params map[string]any
		}
		_ = json.Unmarshal(body, &env)
		a.mu.Lock()
		a.reqs = append(a.reqs, scriptedReq{header: r.Header.Clone(), body: body, method: env.Method, params: env.Params})
		a.mu.Unlock()
		res := a.reply(env.Method, env.Params)
		if res == "" { // hang until the caller gives up
			<-r.Context().Done()
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(env.ID)+`,`+res+`}`)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *scriptedAgent) requests() []scriptedReq {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]scriptedReq(nil), a.reqs...)
}

var card10 = map[string]any{"name": "one", "supportedInterfaces": []any{map[string]any{"url": "http://x", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}}}

func (b *testBundle) registerCard(t *testing.T, url string, card map[string]any) {
	t.Helper()
	body := map[string]any{"url": url}
	if card != nil {
		body["agent_card"] = card
	}
	w := b.do("POST", "/registry/register", body, bearer(b.ownToken))
	require.Equal(t, 200, w.Code, w.Body.String())
}

func TestGatewaySend(t *testing.T) {
	t.Parallel()
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()

			t.Run("Version10FromCardBlockingMessageReply", func(t *testing.T) {
				t.Parallel()
				b := setupOn(t, backend)
				agent := newScriptedAgent(t, func(string, map[string]any) string {
					return `"result":{"message":{"messageId":"r1","role":"ROLE_AGENT","parts":[{"text":"pong"}]}}`
				})
				b.registerCard(t, agent.srv.URL, card10)
				out := b.server.d.Gateway.Send(b.ctx, b.ownID, gateway.Message{Text: "ping", Metadata: map[string]any{"schedule_id": "s1"}},
					gateway.SendOptions{Caller: "scheduler", Purpose: store.LeaseCron, Ref: "run-1", Timeout: 5 * time.Second})
				require.Equal(t, gateway.KindMessage, out.Kind, out.Detail)
				require.Equal(t, "1.0", out.Version)
				require.Equal(t, "pong", out.Text)
				require.True(t, out.Written)

				reqs := agent.requests()
				require.Len(t, reqs, 1)
				r := reqs[0]
				require.Equal(t, "SendMessage", r.method)
				require.Equal(t, "1.0", r.header.Get("A2A-Version"))
				msg := r.params["message"].(map[string]any)
				require.Equal(t, "ROLE_USER", msg["role"])
				require.Equal(t, out.MessageID, msg["messageId"])
				require.Equal(t, []any{map[string]any{"text": "ping"}}, msg["parts"], "1.0 parts carry no kind")
				require.Equal(t, map[string]any{"schedule_id": "s1"}, msg["metadata"])
				ws, err := b.store.GetWorkspace(b.ctx, b.ownID)
				require.NoError(t, err)
				c, err := callersig.Verify(ws.OutboundSecret, r.header.Get(callersig.Header), r.body, b.clock.Now())
				require.NoError(t, err)
				require.Equal(t, "scheduler", c.ID)

				rows := b.activityRows(b.ownID)
				require.Equal(t, "a2a_receive", rows[0].ActivityType)
				require.Equal(t, "scheduler", rows[0].SourceID)
				require.Equal(t, "message", rows[0].Status)
				evs, err := b.store.ListEvents(b.ctx, store.EventFilter{Type: "A2A_RESPONSE"})
				require.NoError(t, err)
				require.Empty(t, evs, "platform sends are not shown as if a person had asked")
				require.Equal(t, 0, b.inflight(t, b.ownID), "the lease is released")
			})

			t.Run("Version03TaskPolledUntilTerminal", func(t *testing.T) {
				t.Parallel()
				b := setupOn(t, backend)
				var polls int
				agent := newScriptedAgent(t, func(method string, _ map[string]any) string {
					switch method {
					case "message/send":
						return `"result":{"kind":"task","id":"t1","contextId":"c","status":{"state":"working"}}`
					case "tasks/get":
						polls++
						if polls < 3 {
							return `"result":{"kind":"task","id":"t1","contextId":"c","status":{"state":"working"}}`
						}
						return `"result":{"kind":"task","id":"t1","contextId":"c","status":{"state":"completed"},"artifacts":[{"artifactId":"a","parts":[{"kind":"text","text":"audit ok"}]}]}`
					}
					return `"error":{"code":-32601,"message":"no"}`
				})
				b.registerCard(t, agent.srv.URL, map[string]any{"name": "old", "protocolVersion": "0.3.0"})
				done := make(chan gateway.Outcome, 1)
				timers := b.clock.Timers()
				go func() {
					done <- b.server.d.Gateway.Send(b.ctx, b.ownID, gateway.Message{Text: "audit"}, gateway.SendOptions{Caller: "scheduler", Timeout: time.Minute})
				}()
				for _, d := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} { // the poll pause doubles
					require.True(t, b.clock.WaitForTimers(timers+1, 10*time.Second))
					b.clock.Advance(d)
				}
				out := <-done
				require.Equal(t, gateway.KindTask, out.Kind, out.Detail)
				require.Equal(t, "0.3", out.Version)
				require.Equal(t, gateway.StateCompleted, out.State)
				require.Equal(t, "t1", out.TaskID)
				require.Equal(t, "audit ok", out.Text)
				reqs := agent.requests()
				require.Len(t, reqs, 4)
				require.Empty(t, reqs[0].header.Get("A2A-Version"), "0.3 is the version without the header")
				require.Equal(t, map[string]any{"blocking": true}, reqs[0].params["configuration"])
				msg := reqs[0].params["message"].(map[string]any)
				require.Equal(t, "user", msg["role"])
				require.Equal(t, "message", msg["kind"])
				require.Equal(t, map[string]any{"id": "t1"}, reqs[1].params)
			})

			t.Run("TaskStatesAndErrors", func(t *testing.T) {
				t.Parallel()
				for name, tc := range map[string]struct {
					result string
					kind   gateway.Kind
					state  string
					detail string
				}{
					"Failed10":        {`"result":{"task":{"id":"t","status":{"state":"TASK_STATE_FAILED","message":{"role":"ROLE_AGENT","parts":[{"text":"disk full"}]}}}}`, gateway.KindTask, gateway.StateFailed, "disk full"},
					"InputRequired10": {`"result":{"task":{"id":"t","status":{"state":"TASK_STATE_INPUT_REQUIRED"}}}`, gateway.KindTask, gateway.StateInputRequired, ""},
					"Canceled10":      {`"result":{"task":{"id":"t","status":{"state":"TASK_STATE_CANCELED"}}}`, gateway.KindTask, gateway.StateCanceled, ""},
					"RPCError":        {`"error":{"code":-32603,"message":"internal"}`, gateway.KindRPCError, "", "JSON-RPC error -32603: internal"},
					"EmptyMessage":    {`"result":{"message":{"role":"ROLE_AGENT","parts":[]}}`, gateway.KindMessage, "", ""},
				} {
					t.Run(name, func(t *testing.T) {
						t.Parallel()
						b := setupOn(t, backend)
						agent := newScriptedAgent(t, func(string, map[string]any) string { return tc.result })
						b.registerCard(t, agent.srv.URL, card10)
						out := b.server.d.Gateway.Send(b.ctx, b.ownID, gateway.Message{Text: "x"}, gateway.SendOptions{Timeout: 5 * time.Second})
						require.Equal(t, tc.kind, out.Kind, out.Detail)
						require.Equal(t, tc.state, out.State)
						require.Equal(t, tc.detail, out.Detail)
						if tc.kind == gateway.KindTask && tc.state == gateway.StateFailed {
							require.Equal(t, tc.detail, out.Text, "a failed task's status message is its text")
						} else {
							require.Empty(t, out.Text, "no reply text")
						}
					})
				}
			})

			t.Run("TransportFailuresTellWhetherTheAgentMayHaveIt", func(t *testing.T) {
				t.Parallel()
				b := setupOn(t, backend)
				// A listener that closed: the request never left.
				l, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				dead := "http://" + l.Addr().String()
				require.NoError(t, l.Close())
				b.registerCard(t, dead, nil)
				out := b.server.d.Gateway.Send(b.ctx, b.ownID, gateway.Message{Text: "x"}, gateway.SendOptions{Timeout: 5 * time.Second})
				require.Equal(t, gateway.KindNotSent, out.Kind, out.Detail)
				require.False(t, out.Written)

				// An agent that reads the whole request, then drops the connection.
				drop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.ReadAll(r.Body)
					conn, _, err := w.(http.Hijacker).Hijack()
					if err == nil {
						conn.Close()
					}
				}))
				t.Cleanup(drop.Close)
				b.registerCard(t, drop.URL, nil)
				out = b.server.d.Gateway.Send(b.ctx, b.ownID, gateway.Message{Text: "x"}, gateway.SendOptions{Timeout: 5 * time.Second})
				require.Equal(t, gateway.KindSentFailed, out.Kind, out.Detail)
				require.True(t, out.Written)

				// An agent that refuses with 503 + Retry-After did not take it.
				refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Retry-After", "7")
					http.Error(w, "busy", http.StatusServiceUnavailable)
				}))
				t.Cleanup(refuse.Close)
				b.registerCard(t, refuse.URL, nil)
				out = b.server.d.Gateway.Send(b.ctx, b.ownID, gateway.Message{Text: "x"}, gateway.SendOptions{Timeout: 5 * time.Second})
				require.Equal(t, gateway.KindAgentBusy, out.Kind, out.Detail)
				require.Equal(t, 7*time.Second, out.RetryAfter)

				// An agent that never answers: the timeout reaches the call.
				hang := newScriptedAgent(t, func(string, map[string]any) string { return "" })
				b.registerCard(t, hang.srv.URL, nil)
				out = b.server.d.Gateway.Send(b.ctx, b.ownID, gateway.Message{Text: "x"}, gateway.SendOptions{Timeout: 200 * time.Millisecond})
				require.Equal(t, gateway.KindTimeout, out.Kind, out.Detail)
				require.True(t, out.Written)

				// A caller that goes away cancels the call.
				ctx, cancel := context.WithCancel(b.ctx)
				go func() {
					for len(hang.requests()) < 2 {
						time.Sleep(time.Millisecond)
					}
					cancel()
				}()
				out = b.server.d.Gateway.Send(ctx, b.ownID, gateway.Message{Text: "x"}, gateway.SendOptions{Timeout: time.Minute})
				require.Equal(t, gateway.KindCancelled, out.Kind, out.Detail)
				require.Eventually(t, func() bool { return b.inflight(t, b.ownID) == 0 }, 10*time.Second, 5*time.Millisecond)
			})

			t.Run("BusyRefusedAndHeldLeaseUsed", func(t *testing.T) {
				t.Parallel()
				b := setupOn(t, backend)
				agent := newScriptedAgent(t, func(string, map[string]any) string {
					return `"result":{"kind":"message","role":"agent","parts":[{"kind":"text","text":"ok"}]}`
				})
				b.registerCard(t, agent.srv.URL, nil)
				gw := b.server.d.Gateway
				l, err := gw.Acquire(b.ctx, b.ownID, store.LeaseCron, "run-1", 0)
				require.NoError(t, err)
				out := gw.Send(b.ctx, b.ownID, gateway.Message{Text: "x"}, gateway.SendOptions{Timeout: 5 * time.Second})
				require.Equal(t, gateway.KindBusy, out.Kind)
				require.False(t, out.Written)
				require.Empty(t, agent.requests(), "a busy send never reaches the agent")

				_, err = gw.Acquire(b.ctx, b.ownID, store.LeaseCron, "run-2", 0)
				require.ErrorIs(t, err, gateway.ErrBusy)
				out = gw.Send(b.ctx, b.ownID, gateway.Message{Text: "x"}, gateway.SendOptions{Lease: &l, Timeout: 5 * time.Second})
				require.Equal(t, gateway.KindMessage, out.Kind, out.Detail)
				require.Equal(t, 0, b.inflight(t, b.ownID), "Send released the lease it was given")
			})

			t.Run("RefusalsBeforeAnyRequest", func(t *testing.T) {
				t.Parallel()
				b := setupOn(t, backend)
				gw := b.server.d.Gateway
				out := gw.Send(b.ctx, b.ownID, gateway.Message{Text: "x"}, gateway.SendOptions{})
				require.Equal(t, gateway.KindUnavailable, out.Kind, "awaiting its agent")
				require.Contains(t, out.Detail, "awaiting_agent")
				out = gw.Send(b.ctx, b.removedID, gateway.Message{Text: "x"}, gateway.SendOptions{})
				require.Equal(t, gateway.KindNotFound, out.Kind)
				agent := newScriptedAgent(t, func(string, map[string]any) string { return `"result":{}` })
				b.registerCard(t, agent.srv.URL, nil)
				require.Equal(t, 200, b.do("POST", "/workspaces/"+b.ownID+"/pause", nil, bearer(adminToken)).Code)
				out = gw.Send(b.ctx, b.ownID, gateway.Message{Text: "x"}, gateway.SendOptions{})
				require.Equal(t, gateway.KindUnavailable, out.Kind)
				require.Contains(t, out.Detail, "paused")
				require.Empty(t, agent.requests())
			})
		})
	}
}

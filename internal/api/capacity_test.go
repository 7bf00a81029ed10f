package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/gateway"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// holdingAgent answers "hold" only when released, and reports each arrival.
type holdingAgent struct {
	srv     *httptest.Server
	arrived chan string // the JSON-RPC id of each request, on arrival
	release chan struct{}
	once    sync.Once
}

func newHoldingAgent(t *testing.T) *holdingAgent {
	t.Helper()
	a := &holdingAgent{arrived: make(chan string, 64), release: make(chan struct{})}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var env struct {
			ID     json.RawMessage
			Method string
		}
		_ = json.Unmarshal(body, &env)
		a.arrived <- string(env.ID)
		if env.Method == "hold" {
			select {
			case <-a.release:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(env.ID)+`,"result":{"kind":"message","role":"agent","parts":[{"kind":"text","text":"ok"}]}}`)
	}))
	t.Cleanup(func() { a.free(); a.srv.Close() })
	return a
}

func (a *holdingAgent) free() { a.once.Do(func() { close(a.release) }) }

func (a *holdingAgent) waitArrival(t *testing.T) string {
	t.Helper()
	select {
	case id := <-a.arrived:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("no request reached the agent")
	}
	return ""
}

// call runs a gateway call on a real HTTP server in the background.
func call(t *testing.T, base, ws, method string, id int, hdr map[string]string) <-chan *http.Response {
	t.Helper()
	out := make(chan *http.Response, 1)
	go func() {
		body := `{"jsonrpc":"2.0","id":` + itoa(int64(id)) + `,"method":"` + method + `","params":{}}`
		req, _ := http.NewRequest("POST", base+"/workspaces/"+ws+"/a2a", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := httpClient().Do(req)
		if err != nil {
			t.Error(err)
			out <- nil
			return
		}
		out <- resp
	}()
	return out
}

func recv(t *testing.T, ch <-chan *http.Response) (*http.Response, string) {
	t.Helper()
	select {
	case r := <-ch:
		require.NotNil(t, r)
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		return r, string(body)
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not return")
	}
	return nil, ""
}

func (b *testBundle) inflight(t *testing.T, id string) int {
	t.Helper()
	w := b.do("GET", "/workspaces", nil, bearer(adminToken))
	require.Equal(t, 200, w.Code)
	for _, x := range decodeBody[[]workspaceJSON](t, w) {
		if x.ID == id {
			return x.Inflight
		}
	}
	t.Fatalf("workspace %s not listed", id)
	return 0
}

func TestGatewayCapacity(t *testing.T) {
	t.Parallel()
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()

			t.Run("BusyAfterQueueTimeoutThenSlotHandedOn", func(t *testing.T) {
				t.Parallel()
				b := setupOn(t, backend)
				agent := newHoldingAgent(t)
				b.online(t, b.ownToken, agent.srv.URL)
				srv := httptest.NewServer(b.handler)
				t.Cleanup(srv.Close)

				first := call(t, srv.URL, b.ownID, "hold", 1, nil)
				agent.waitArrival(t)
				require.Equal(t, 1, b.inflight(t, b.ownID), "the platform counts the call in flight")

				// No wait allowed: busy at once, with the JSON-RPC error of SPEC §7.3.
				resp, body := recv(t, call(t, srv.URL, b.ownID, "quick", 2, map[string]string{"X-Queue-Timeout": "0"}))
				require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
				require.Equal(t, "2", resp.Header.Get("Retry-After"))
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
				require.NoError(t, json.Unmarshal([]byte(body), &e), body)
				require.Equal(t, 2, e.ID, "the error echoes the request id")
				require.Equal(t, -32000, e.Error.Code)
				require.Equal(t, "AGENT_BUSY", e.Error.Data.Reason)
				require.Equal(t, 1, e.Error.Data.MaxConcurrentTasks)

				// A caller willing to wait gets the slot the moment it frees,
				// and never reached the agent before that.
				third := call(t, srv.URL, b.ownID, "quick", 3, map[string]string{"X-Queue-Timeout": "30"})
				select {
				case id := <-agent.arrived:
					t.Fatalf("request %s reached the agent while its only slot was taken", id)
				case <-time.After(100 * time.Millisecond): // a bounded look for a wrong arrival
				}
				agent.free()
				resp, body = recv(t, first)
				require.Equal(t, 200, resp.StatusCode, body)
				resp, body = recv(t, third)
				require.Equal(t, 200, resp.StatusCode, body)
				require.Equal(t, "3", agent.waitArrival(t))
				require.Equal(t, 0, b.inflight(t, b.ownID))

				statuses := map[string]int{}
				for _, r := range b.activityRows(b.ownID) {
					if r.ActivityType == "a2a_receive" {
						statuses[r.Status]++
					}
				}
				require.Equal(t, map[string]int{"ok": 2, "busy": 1}, statuses, "every call is recorded, the refused one as busy")
			})

			t.Run("WaitEndsInBusyOnTheClock", func(t *testing.T) {
				t.Parallel()
				b := setupOn(t, backend)
				agent := newHoldingAgent(t)
				b.online(t, b.ownToken, agent.srv.URL)
				srv := httptest.NewServer(b.handler)
				t.Cleanup(srv.Close)
				first := call(t, srv.URL, b.ownID, "hold", 1, nil)
				agent.waitArrival(t)
				timers := b.clock.Timers()
				second := call(t, srv.URL, b.ownID, "quick", 2, map[string]string{"X-Queue-Timeout": "5"})
				// The waiter sleeps on two timers (the 5 s queue deadline and a
				// 250 ms look for releases elsewhere), not on a busy loop.
				require.True(t, b.clock.WaitForTimers(timers+2, 10*time.Second))
				for range 19 { // each 250 ms look finds the slot still taken and re-arms
					b.clock.Advance(250 * time.Millisecond)
					require.True(t, b.clock.WaitForTimers(timers+2, 10*time.Second))
				}
				b.clock.Advance(250 * time.Millisecond) // 5 s: the queue deadline
				resp, body := recv(t, second)
				require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
				require.Contains(t, body, "AGENT_BUSY")
				agent.free()
				resp, _ = recv(t, first)
				require.Equal(t, 200, resp.StatusCode)
			})

			t.Run("DeadReplicasLeaseExpiresByStoreTime", func(t *testing.T) {
				t.Parallel()
				b := setupOn(t, backend)
				agent := newHoldingAgent(t)
				agent.free()
				b.online(t, b.ownToken, agent.srv.URL)
				// Another replica took the only slot and died: nobody renews it.
				now := b.clock.Now()
				require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error {
					_, ok, err := tx.AcquireLease(b.ctx, store.Lease{ID: uuid.NewString(), WorkspaceID: b.ownID, Holder: "dead-replica",
						Purpose: store.LeaseA2A, AcquiredAt: now, ExpiresAt: now.Add(gateway.LeaseTTL)}, 1)
					require.True(t, ok)
					return err
				}))
				require.Equal(t, 1, b.inflight(t, b.ownID))
				w := b.do("POST", "/workspaces/"+b.ownID+"/a2a", `{"jsonrpc":"2.0","id":1,"method":"quick"}`, bearer(adminToken), header("X-Queue-Timeout", "0"))
				require.Equal(t, http.StatusServiceUnavailable, w.Code, w.Body.String())
				b.clock.Advance(gateway.LeaseTTL)
				require.Equal(t, 0, b.inflight(t, b.ownID), "an expired lease is not in flight")
				w = b.do("POST", "/workspaces/"+b.ownID+"/a2a", `{"jsonrpc":"2.0","id":1,"method":"quick"}`, bearer(adminToken), header("X-Queue-Timeout", "0"))
				require.Equal(t, 200, w.Code, w.Body.String())
			})

			t.Run("SlotsFollowMaxConcurrentTasks", func(t *testing.T) {
				t.Parallel()
				b := setupOn(t, backend)
				agent := newHoldingAgent(t)
				b.online(t, b.ownToken, agent.srv.URL)
				require.Equal(t, 200, b.do("PATCH", "/workspaces/"+b.ownID, map[string]any{"max_concurrent_tasks": 3}, bearer(adminToken)).Code)
				srv := httptest.NewServer(b.handler)
				t.Cleanup(srv.Close)
				var held []<-chan *http.Response
				for i := range 3 {
					held = append(held, call(t, srv.URL, b.ownID, "hold", i, nil))
					agent.waitArrival(t)
				}
				require.Equal(t, 3, b.inflight(t, b.ownID))
				resp, body := recv(t, call(t, srv.URL, b.ownID, "quick", 9, map[string]string{"X-Queue-Timeout": "0"}))
				require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
				agent.free()
				for _, h := range held {
					resp, _ := recv(t, h)
					require.Equal(t, 200, resp.StatusCode)
				}
			})

			t.Run("DisconnectWhileQueuedLeavesNoLease", func(t *testing.T) {
				t.Parallel()
				b := setupOn(t, backend)
				agent := newHoldingAgent(t)
				b.online(t, b.ownToken, agent.srv.URL)
				srv := httptest.NewServer(b.handler)
				t.Cleanup(srv.Close)
				first := call(t, srv.URL, b.ownID, "hold", 1, nil)
				agent.waitArrival(t)
				timers := b.clock.Timers()
				ctx, cancel := context.WithCancel(context.Background())
				req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/workspaces/"+b.ownID+"/a2a", strings.NewReader(`{"jsonrpc":"2.0","id":2,"method":"quick"}`))
				req.Header.Set("Authorization", "Bearer "+adminToken)
				errc := make(chan error, 1)
				go func() {
					resp, err := httpClient().Do(req)
					if err == nil {
						resp.Body.Close()
					}
					errc <- err
				}()
				require.True(t, b.clock.WaitForTimers(timers+2, 10*time.Second), "the second caller is queued")
				cancel()
				require.Error(t, <-errc)
				require.Eventually(t, func() bool { return b.clock.Timers() == timers }, 10*time.Second, 5*time.Millisecond, "the waiter left the queue")
				agent.free()
				resp, _ := recv(t, first)
				require.Equal(t, 200, resp.StatusCode)
				require.Eventually(t, func() bool { return b.inflight(t, b.ownID) == 0 }, 10*time.Second, 5*time.Millisecond)
				select {
				case id := <-agent.arrived:
					t.Fatalf("the abandoned call %s reached the agent", id)
				default:
				}
			})

			t.Run("HeartbeatEventCarriesInflight", func(t *testing.T) {
				t.Parallel()
				b := setupOn(t, backend)
				agent := newHoldingAgent(t)
				b.online(t, b.ownToken, agent.srv.URL)
				_, err := b.server.d.Gateway.Acquire(b.ctx, b.ownID, store.LeaseCron, "run-1", 0)
				require.NoError(t, err)
				require.NoError(t, b.hub.Prime(b.ctx))
				sub, _, err := b.hub.Subscribe(16)
				require.NoError(t, err)
				defer sub.Close()
				require.Equal(t, 200, b.do("POST", "/registry/heartbeat", map[string]any{"active_tasks": 2}, bearer(b.ownToken)).Code)
				for ev := range sub.C() {
					if ev.Type != "WORKSPACE_HEARTBEAT" {
						continue
					}
					require.JSONEq(t, `{"active_tasks":2,"inflight":1}`, string(ev.Payload), "the agent's count next to the platform's")
					break
				}
			})

			t.Run("BadQueueTimeoutNamesTheHeader", func(t *testing.T) {
				t.Parallel()
				b := setupOn(t, backend)
				for _, v := range []string{"-1", "x", "1.5", "601"} {
					w := b.do("POST", "/workspaces/"+b.ownID+"/a2a", `{"jsonrpc":"2.0","id":1,"method":"x"}`, bearer(adminToken), header("X-Queue-Timeout", v))
					require.Equal(t, 400, w.Code, v)
					require.Contains(t, w.Body.String(), "X-Queue-Timeout")
				}
			})
		})
	}
}

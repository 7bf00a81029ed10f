package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/agentplane/agentplane/internal/audit"
	"github.com/agentplane/agentplane/internal/gateway"
	"github.com/agentplane/agentplane/internal/netguard"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/pkg/callersig"
	"github.com/stretchr/testify/require"
)

// fakeAgent is a real A2A JSON-RPC endpoint on loopback that records what it
// received.
type fakeAgent struct {
	srv      *httptest.Server
	mu       sync.Mutex
	headers  []http.Header
	bodies   [][]byte
	release  chan struct{}
	answered string
}

func newFakeAgent(t *testing.T) *fakeAgent {
	t.Helper()
	a := &fakeAgent{release: make(chan struct{})}
	a.answered = `{"jsonrpc":"2.0","id":7,"result":{"kind":"message","role":"agent","parts":[{"kind":"text","text":"done"}]}}`
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.headers = append(a.headers, r.Header.Clone())
		a.bodies = append(a.bodies, body)
		a.mu.Unlock()
		var env struct{ Method string }
		_ = json.Unmarshal(body, &env)
		switch env.Method {
		case "message/stream":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"n\":1}\n\n")
			w.(http.Flusher).Flush()
			<-a.release
			fmt.Fprint(w, "data: {\"n\":2}\n\n")
		case "slow":
			<-r.Context().Done()
		case "big":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"x":"%s"}`, strings.Repeat("b", 1<<17))
		case "boom":
			http.Error(w, "agent exploded", http.StatusInternalServerError)
		case "full":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"jsonrpc":"2.0","id":"req-9","error":{"code":-32000,"message":"agent busy"}}`)
		default:
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, a.answered)
		}
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeAgent) lastHeader() http.Header {
	h, _ := a.last()
	return h
}

func (a *fakeAgent) last() (http.Header, []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.headers[len(a.headers)-1], a.bodies[len(a.bodies)-1]
}

func (b *testBundle) online(t *testing.T, tok, url string) {
	t.Helper()
	require.Equal(t, 200, b.do("POST", "/registry/register", map[string]any{"url": url}, bearer(tok)).Code)
}

func rpcErr(t *testing.T, w *httptest.ResponseRecorder) (json.RawMessage, int) {
	t.Helper()
	var e struct {
		ID    json.RawMessage    `json:"id"`
		Error struct{ Code int } `json:"error"`
	}
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &e), w.Body.String())
	return e.ID, e.Error.Code
}

func TestA2AGateway(t *testing.T) {
	t.Parallel()

	t.Run("PassesBytesThroughSignedWithoutCallerCredentials", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		agent := newFakeAgent(t)
		b.online(t, b.ownToken, agent.srv.URL)
		req := `{"jsonrpc":"2.0","id":7,"method":"SendMessage","params":{"message":{"messageId":"m1","role":"ROLE_USER","parts":[{"text":"hi"}]}}}`
		w := b.do("POST", "/workspaces/"+b.ownID+"/a2a", req, bearer(adminToken), header("A2A-Version", "1.0"))
		require.Equal(t, 200, w.Code, w.Body.String())
		require.Equal(t, agent.answered, w.Body.String(), "the agent's bytes, unchanged")
		h, body := agent.last()
		require.Empty(t, h.Get("Authorization"), "the caller's credentials are never forwarded")
		require.Equal(t, "1.0", h.Get("A2A-Version"))
		ws, err := b.store.GetWorkspace(b.ctx, b.ownID)
		require.NoError(t, err)
		c, err := callersig.Verify(ws.OutboundSecret, h.Get(callersig.Header), body, b.clock.Now())
		require.NoError(t, err)
		require.Equal(t, "admin", c.ID)
		var got map[string]any
		require.NoError(t, json.Unmarshal(body, &got))
		require.Equal(t, "SendMessage", got["method"])

		rows := b.activityRows(b.ownID)
		require.Equal(t, "a2a_receive", rows[0].ActivityType)
		require.Equal(t, "SendMessage", rows[0].Method)
		require.Equal(t, "ok", rows[0].Status)
		evs, err := b.store.ListEvents(b.ctx, store.EventFilter{Type: "A2A_RESPONSE"})
		require.NoError(t, err)
		require.Empty(t, evs, "a script's call (admin token) is not shown in the canvas chat")

		// The canvas (an admin session) sees the answer to its own message.
		w = b.do("POST", "/workspaces/"+b.ownID+"/a2a", req, cookie(b.session), header("Origin", "https://canvas.example.com"), header("A2A-Version", "1.0"))
		require.Equal(t, 200, w.Code, w.Body.String())
		_, body = agent.last()
		c, err = callersig.Verify(ws.OutboundSecret, agent.lastHeader().Get(callersig.Header), body, b.clock.Now())
		require.NoError(t, err)
		require.Equal(t, "canvas", c.ID)
		evs, err = b.store.ListEvents(b.ctx, store.EventFilter{Type: "A2A_RESPONSE"})
		require.NoError(t, err)
		require.Len(t, evs, 1)
		require.Equal(t, store.AudienceAdmin, evs[0].Audience)
	})

	t.Run("BareBodyWrappedAndMessageIDAdded", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		agent := newFakeAgent(t)
		b.online(t, b.ownToken, agent.srv.URL)
		w := b.do("POST", "/workspaces/"+b.ownID+"/a2a", `{"message":{"role":"user","parts":[{"kind":"text","text":"hi"}]}}`, bearer(adminToken))
		require.Equal(t, 200, w.Code, w.Body.String())
		_, body := agent.last()
		var env struct {
			JSONRPC, Method string
			ID              any
			Params          struct{ Message map[string]any }
		}
		require.NoError(t, json.Unmarshal(body, &env))
		require.Equal(t, "2.0", env.JSONRPC)
		require.Equal(t, "message/send", env.Method)
		require.NotEmpty(t, env.ID)
		require.NotEmpty(t, env.Params.Message["messageId"])
	})

	t.Run("StreamsEventByEvent", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		agent := newFakeAgent(t)
		b.online(t, b.ownToken, agent.srv.URL)
		srv := httptest.NewServer(b.handler)
		defer srv.Close()
		req, _ := http.NewRequest("POST", srv.URL+"/workspaces/"+b.ownID+"/a2a", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"message/stream","params":{}}`))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
		r := bufio.NewReader(resp.Body)
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "data: {\"n\":1}\n", line, "the first event arrives while the agent still holds the second")
		close(agent.release)
		rest, _ := io.ReadAll(r)
		require.Contains(t, string(rest), "data: {\"n\":2}")
	})

	t.Run("FailuresAreJSONRPCErrorsEchoingTheID", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		agent := newFakeAgent(t)
		dead := httptest.NewServer(http.NotFoundHandler())
		deadURL := dead.URL
		dead.Close()
		call := func(ws, method string, opts ...reqOpt) *httptest.ResponseRecorder {
			return b.do("POST", "/workspaces/"+ws+"/a2a", `{"jsonrpc":"2.0","id":"req-9","method":"`+method+`"}`, append([]reqOpt{bearer(adminToken)}, opts...)...)
		}
		// Not connected yet.
		w := call(b.ownID, "message/send")
		require.Equal(t, 503, w.Code)
		id, _ := rpcErr(t, w)
		require.JSONEq(t, `"req-9"`, string(id))
		require.NotEmpty(t, w.Header().Get("Retry-After"))
		// Unknown workspace.
		require.Equal(t, 404, call("0190f5d2-8a4b-7c3e-9f1a-2b3c4d5e6f70", "message/send").Code)

		b.online(t, b.ownToken, agent.srv.URL)
		for _, c := range []struct {
			method string
			opts   []reqOpt
			status int
		}{
			{"slow", []reqOpt{header("X-Timeout", "1")}, 504},
			{"big", nil, 502},
			{"boom", nil, 502},
		} {
			w := call(b.ownID, c.method, c.opts...)
			require.Equal(t, c.status, w.Code, c.method+": "+w.Body.String())
			id, code := rpcErr(t, w)
			require.JSONEq(t, `"req-9"`, string(id))
			require.NotZero(t, code)
		}
		// An agent that says "later" (503/429 + Retry-After) is passed
		// through as it is, not turned into a 502.
		w = call(b.ownID, "full")
		require.Equal(t, 503, w.Code)
		require.Equal(t, "5", w.Header().Get("Retry-After"))
		require.JSONEq(t, `{"jsonrpc":"2.0","id":"req-9","error":{"code":-32000,"message":"agent busy"}}`, w.Body.String())
		require.Equal(t, "agent_busy", b.activityRows(b.ownID)[0].Status)
		require.Equal(t, 400, call(b.ownID, "x", header("X-Timeout", "soon")).Code)
		require.Equal(t, 400, b.do("POST", "/workspaces/"+b.ownID+"/a2a", `[1]`, bearer(adminToken)).Code)

		b.online(t, b.ownToken, deadURL)
		w = call(b.ownID, "message/send")
		require.Equal(t, 502, w.Code, w.Body.String())

		require.Equal(t, 200, b.do("POST", "/workspaces/"+b.ownID+"/pause", nil, bearer(adminToken)).Code)
		w = call(b.ownID, "message/send")
		require.Equal(t, 503, w.Code)
		require.Contains(t, w.Body.String(), "paused")
	})

	t.Run("WorkspaceCallersFollowTheHierarchy", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		agent := newFakeAgent(t)
		b.online(t, b.ownToken, agent.srv.URL)
		// other is own's child: allowed, and signed as that workspace.
		w := b.do("POST", "/workspaces/"+b.ownID+"/a2a", `{"jsonrpc":"2.0","id":1,"method":"message/send"}`, bearer(b.otherToken))
		require.Equal(t, 200, w.Code, w.Body.String())
		h, body := agent.last()
		ws, err := b.store.GetWorkspace(b.ctx, b.ownID)
		require.NoError(t, err)
		c, err := callersig.Verify(ws.OutboundSecret, h.Get(callersig.Header), body, b.clock.Now())
		require.NoError(t, err)
		require.Equal(t, "workspace:"+b.otherID, c.ID)
		// A root stranger may not.
		stranger, err := b.registry.Create(b.ctx, "admin:test", registryCreate("Stranger"))
		require.NoError(t, err)
		w = b.do("POST", "/workspaces/"+b.ownID+"/a2a", `{"jsonrpc":"2.0","id":1,"method":"message/send"}`, bearer(stranger.Token))
		require.Equal(t, 403, w.Code)
		_, code := rpcErr(t, w)
		require.NotZero(t, code)
	})
}

// TestA2ARefusedAddressAtCallTime: an agent whose name resolves to a
// forbidden address when the gateway dials (rebinding after registration)
// is refused with 502, and the refusal is a security event.
func TestA2ARefusedAddressAtCallTime(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := audit.NewRecorder(b.store, b.server.d.Log)
	strict := netguard.New(netguard.Options{
		Resolver: staticResolver{"agent.example": netip.MustParseAddr("10.1.2.3")},
		Dial: func(context.Context, string, string) (net.Conn, error) {
			t.Fatal("a refused address must never be dialed")
			return nil, nil
		},
	})
	b.server.d.Gateway = gateway.New(gateway.Deps{Store: b.store, CanTalk: b.registry.CanTalk, Client: strict.Client(0),
		Clock: b.clock, Log: b.server.d.Log, Audit: rec})
	b.online(t, b.ownToken, "http://127.0.0.1:1") // registered while allowed
	ws, err := b.store.GetWorkspace(b.ctx, b.ownID)
	require.NoError(t, err)
	ws.URL = "http://agent.example:8080"
	require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error { _, err := tx.UpdateWorkspace(b.ctx, ws); return err }))

	w := b.do("POST", "/workspaces/"+b.ownID+"/a2a", `{"jsonrpc":"2.0","id":3,"method":"message/send"}`, bearer(adminToken))
	require.Equal(t, 502, w.Code, w.Body.String())
	require.Contains(t, w.Body.String(), "refused")
	sec, err := b.store.ListSecurityEvents(b.ctx, store.SecurityEventFilter{Limit: 1})
	require.NoError(t, err)
	require.Equal(t, audit.KindURLRefused, sec[0].Kind)
	require.Contains(t, string(sec[0].Detail), `"phase":"call"`)
}

type staticResolver map[string]netip.Addr

func (r staticResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := r[host]; ok {
		return []netip.Addr{a}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

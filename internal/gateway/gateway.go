// Package gateway is the one door through which callers message a workspace's
// agent over A2A JSON-RPC (SPEC §7): it checks who may call whom, forwards the
// request with a signed X-Agentplane-Caller header (never the caller's own
// credentials), passes the agent's answer back byte for byte — SSE streams
// event by event — and records the call.
//
// It decodes only the JSON-RPC envelope: it never translates between A2A
// versions and never rewrites the agent's answer. It must only dial agents
// through the netguard client.
package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/agentplane/agentplane/internal/audit"
	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/clock"
	"github.com/agentplane/agentplane/internal/fault"
	"github.com/agentplane/agentplane/internal/netguard"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/pkg/callersig"
	"github.com/google/uuid"
)

// Defaults (SPEC §7.3, §7.4).
const (
	DefaultTimeout     = 300 * time.Second
	MaxTimeout         = 24 * time.Hour
	DefaultResponseCap = 10 << 20
	keepAlive          = 15 * time.Second
	recordBodyMax      = 64 << 10
)

// JSON-RPC error codes used by the gateway.
const (
	codeInvalidRequest = -32600
	codeUpstream       = -32001
	codeTimeout        = -32002
	codeUnavailable    = -32003
	codeForbidden      = -32004
)

// Deps are the gateway's collaborators.
type Deps struct {
	Store       store.Store
	CanTalk     func(ctx context.Context, caller, target string) (bool, error)
	Client      *http.Client
	Clock       clock.Clock
	Log         *slog.Logger
	ResponseCap int64
	// Audit records SSRF refusals at call time (may be nil in tests).
	Audit *audit.Recorder
}

// Gateway forwards A2A calls.
type Gateway struct{ d Deps }

// New returns a gateway.
func New(d Deps) *Gateway {
	if d.ResponseCap <= 0 {
		d.ResponseCap = DefaultResponseCap
	}
	return &Gateway{d: d}
}

// envelope is what the gateway reads of a JSON-RPC request.
type envelope struct {
	body   []byte
	id     json.RawMessage
	method string
}

// parseEnvelope validates the JSON-RPC envelope. A body without "jsonrpc" is
// wrapped as the params of a send for the caller's A2A version and given an
// id; a params.message without messageId is given one.
func parseEnvelope(body []byte, version string) (envelope, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return envelope{}, fault.Invalid("body", "must be a JSON-RPC 2.0 request object")
	}
	if _, ok := top["jsonrpc"]; !ok {
		method := "message/send"
		if version == "1.0" {
			method = "SendMessage"
		}
		id, _ := json.Marshal(uuid.NewString())
		top = map[string]json.RawMessage{"jsonrpc": json.RawMessage(`"2.0"`), "id": id, "method": mustJSON(method), "params": body}
	}
	var jsonrpc, method string
	if json.Unmarshal(top["jsonrpc"], &jsonrpc) != nil || jsonrpc != "2.0" {
		return envelope{}, fault.Invalid("jsonrpc", `must be "2.0"`)
	}
	if json.Unmarshal(top["method"], &method) != nil || method == "" {
		return envelope{}, fault.Invalid("method", "must be a non-empty string")
	}
	if len(top["id"]) == 0 {
		top["id"] = mustJSON(uuid.NewString())
	}
	if p, ok := top["params"]; ok {
		var params map[string]json.RawMessage
		if json.Unmarshal(p, &params) == nil {
			if m, ok := params["message"]; ok {
				var msg map[string]json.RawMessage
				if json.Unmarshal(m, &msg) == nil {
					if _, has := msg["messageId"]; !has {
						msg["messageId"] = mustJSON(uuid.NewString())
						params["message"] = mustJSON(msg)
						top["params"] = mustJSON(params)
					}
				}
			}
		}
	}
	out, err := json.Marshal(top)
	if err != nil {
		return envelope{}, fault.Invalid("body", "cannot be re-encoded: %v", err)
	}
	return envelope{body: out, id: top["id"], method: method}, nil
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Call is one forwarded request.
type Call struct {
	Caller      *auth.Principal
	WorkspaceID string
	Body        []byte
	A2AVersion  string
	Timeout     time.Duration
}

// callerID names the caller in the signed header and the records.
func callerID(p *auth.Principal) string {
	switch {
	case p.Kind == auth.KindWorkspace:
		return "workspace:" + p.WorkspaceID
	case p.ViaSession:
		return "canvas"
	}
	return "admin"
}

// rpcError writes a JSON-RPC error answer echoing the request id.
func rpcError(w http.ResponseWriter, status int, id json.RawMessage, code int, msg string, retryAfter time.Duration) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	w.Header().Set("Content-Type", "application/json")
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter.Seconds())))
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"jsonrpc": "2.0", "id": id, "error": map[string]any{"code": code, "message": msg},
	})
}

// Forward serves one call, writing the answer to w.
func (g *Gateway) Forward(ctx context.Context, w http.ResponseWriter, c Call) {
	start := g.d.Clock.Now()
	env, err := parseEnvelope(c.Body, c.A2AVersion)
	if err != nil {
		f, _ := fault.As(err)
		rpcError(w, http.StatusBadRequest, nil, codeInvalidRequest, f.Error(), 0)
		return
	}
	ws, err := g.d.Store.GetWorkspace(ctx, c.WorkspaceID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && ws.Status == store.StatusRemoved) {
		rpcError(w, http.StatusNotFound, env.id, codeUnavailable, "workspace "+c.WorkspaceID+" not found", 0)
		return
	}
	if err != nil {
		rpcError(w, http.StatusServiceUnavailable, env.id, codeUnavailable, "the store is temporarily unavailable", 2*time.Second)
		return
	}
	if c.Caller.Kind == auth.KindWorkspace {
		ok, err := g.d.CanTalk(ctx, c.Caller.WorkspaceID, ws.ID)
		if err != nil {
			rpcError(w, http.StatusServiceUnavailable, env.id, codeUnavailable, "the store is temporarily unavailable", 2*time.Second)
			return
		}
		if !ok {
			rpcError(w, http.StatusForbidden, env.id, codeForbidden, fmt.Sprintf("workspace %s may not message %s", c.Caller.WorkspaceID, ws.ID), 0)
			return
		}
	}
	switch {
	case ws.Status == store.StatusPaused:
		rpcError(w, http.StatusServiceUnavailable, env.id, codeUnavailable, "workspace is paused", 30*time.Second)
		return
	case ws.Status == store.StatusOffline || ws.Status == store.StatusAwaitingAgent:
		rpcError(w, http.StatusServiceUnavailable, env.id, codeUnavailable, "workspace is "+ws.Status+": its agent is not connected", 10*time.Second)
		return
	case ws.URL == "":
		rpcError(w, http.StatusServiceUnavailable, env.id, codeUnavailable, "workspace has no agent URL", 10*time.Second)
		return
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout) // a caller who disconnects cancels ctx too
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, ws.URL, bytes.NewReader(env.body))
	if err != nil {
		rpcError(w, http.StatusBadGateway, env.id, codeUpstream, "agent URL unusable", 0)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if c.A2AVersion != "" {
		req.Header.Set("A2A-Version", c.A2AVersion)
	}
	caller := callerID(c.Caller)
	req.Header.Set(callersig.Header, callersig.Sign(ws.OutboundSecret, caller, env.body, g.d.Clock.Now()))
	resp, err := g.d.Client.Do(req)
	if errors.Is(err, netguard.ErrRefused) && g.d.Audit != nil {
		// The URL passed the check at registration; refusing it now means
		// its name resolves somewhere it must not (e.g. DNS rebinding).
		actor := c.Caller.Actor()
		if aerr := g.d.Audit.Record(context.WithoutCancel(ctx), audit.Event{
			Kind: audit.KindURLRefused, WorkspaceID: ws.ID, Actor: actor,
			Detail: map[string]string{"url": ws.URL, "reason": err.Error(), "phase": "call"},
		}); aerr != nil {
			g.d.Log.Warn("record security event", "err", aerr)
		}
	}
	status, detail := g.relay(w, resp, err, env, cctx)
	g.record(ctx, ws.ID, caller, env, status, detail, g.d.Clock.Since(start))
}

// relay writes the agent's answer (or the mapped failure) and reports the
// outcome for the record.
func (g *Gateway) relay(w http.ResponseWriter, resp *http.Response, err error, env envelope, ctx context.Context) (string, string) {
	if err != nil {
		switch {
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
			rpcError(w, http.StatusGatewayTimeout, env.id, codeTimeout, "the agent did not answer before the deadline (X-Timeout)", 0)
			return "timeout", err.Error()
		case errors.Is(err, netguard.ErrRefused):
			rpcError(w, http.StatusBadGateway, env.id, codeUpstream, "the agent's address is refused (private or local addresses need --allow-private-agents)", 0)
			return "refused", err.Error()
		case errors.Is(err, context.Canceled):
			return "cancelled", "caller went away"
		}
		rpcError(w, http.StatusBadGateway, env.id, codeUpstream, "the agent could not be reached", 0)
		return "unreachable", err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		rpcError(w, http.StatusBadGateway, env.id, codeUpstream, fmt.Sprintf("the agent answered HTTP %d", resp.StatusCode), 0)
		return "upstream_error", "HTTP " + strconv.Itoa(resp.StatusCode)
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return g.stream(w, resp.Body, ctx)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, g.d.ResponseCap+1))
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			rpcError(w, http.StatusGatewayTimeout, env.id, codeTimeout, "the agent did not finish its answer before the deadline (X-Timeout)", 0)
			return "timeout", err.Error()
		}
		rpcError(w, http.StatusBadGateway, env.id, codeUpstream, "the agent's answer broke off", 0)
		return "upstream_error", err.Error()
	}
	if int64(len(body)) > g.d.ResponseCap {
		rpcError(w, http.StatusBadGateway, env.id, codeUpstream, fmt.Sprintf("the agent's answer exceeds %d bytes", g.d.ResponseCap), 0)
		return "too_large", ""
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
	return "ok", ""
}

// stream passes an SSE answer through event by event, with keep-alive
// comments while the agent is quiet.
func (g *Gateway) stream(w http.ResponseWriter, body io.Reader, ctx context.Context) (string, string) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	lines := make(chan []byte)
	readErr := make(chan error, 1)
	go func() {
		r := bufio.NewReaderSize(body, 64<<10)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 {
				select {
				case lines <- line:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	var written int64
	ticker := time.NewTicker(keepAlive)
	defer ticker.Stop()
	for {
		select {
		case line := <-lines:
			written += int64(len(line))
			if written > g.d.ResponseCap {
				fmt.Fprint(w, "event: error\ndata: {\"error\":\"the agent's stream exceeds the response cap\"}\n\n")
				_ = rc.Flush()
				return "too_large", ""
			}
			_, _ = w.Write(line)
			if len(bytes.TrimSpace(line)) == 0 { // end of one SSE event
				_ = rc.Flush()
			}
		case err := <-readErr:
			_ = rc.Flush()
			if errors.Is(err, io.EOF) {
				return "ok", "stream"
			}
			return "upstream_error", err.Error()
		case <-ticker.C:
			fmt.Fprint(w, ": keep-alive\n\n")
			_ = rc.Flush()
		case <-ctx.Done():
			return "timeout", "stream deadline"
		}
	}
}

func capText(s string) string {
	if len(s) > recordBodyMax {
		s = s[:recordBodyMax]
	}
	return store.CleanText(s)
}

// record writes the a2a_receive activity row (and, for admin/canvas
// callers, an admin-only A2A_RESPONSE event) in one transaction.
func (g *Gateway) record(ctx context.Context, wsID, caller string, env envelope, status, detail string, d time.Duration) {
	ctx = context.WithoutCancel(ctx)
	a := store.Activity{
		ID: uuid.Must(uuid.NewV7()).String(), WorkspaceID: wsID, ActivityType: "a2a_receive", Source: "canvas",
		SourceID: caller, TargetID: wsID, Method: env.method, Summary: env.method + " from " + caller,
		RequestBody: capText(string(env.body)), RequestTruncated: len(env.body) > recordBodyMax,
		Status: status, ErrorDetail: capText(detail), DurationMS: d.Milliseconds(),
	}
	if strings.HasPrefix(caller, "workspace:") {
		a.Source = "agent"
	}
	err := g.d.Store.InTx(ctx, func(tx store.Tx) error {
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		a.CreatedAt = now
		if err := tx.InsertActivity(ctx, a); err != nil {
			return err
		}
		if a.Source == "agent" {
			return nil
		}
		_, _, err = tx.AppendEvent(ctx, store.EventInput{
			Type: "A2A_RESPONSE", WorkspaceID: wsID, Audience: store.AudienceAdmin, Actor: caller,
			Payload: mustJSON(map[string]any{"activity_id": a.ID, "method": env.method, "status": status}),
		})
		return err
	})
	if err != nil {
		g.d.Log.Warn("record a2a call", "workspace_id", wsID, "err", err)
	}
}

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
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
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
	// DefaultQueueTimeout is how long an HTTP caller waits for a free slot
	// without X-Queue-Timeout.
	DefaultQueueTimeout = 10 * time.Second
	// MaxQueueTimeout bounds X-Queue-Timeout.
	MaxQueueTimeout = 10 * time.Minute
	busyRetryAfter  = 2 * time.Second
)

// JSON-RPC error codes used by the gateway.
const (
	codeBusy           = -32000
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
	// Capacity hands out the capacity leases and group-commits records.
	Capacity *Capacity
}

// Gateway forwards A2A calls.
type Gateway struct{ d Deps }

// New returns a gateway.
func New(d Deps) *Gateway {
	if d.ResponseCap <= 0 {
		d.ResponseCap = DefaultResponseCap
	}
	if d.Capacity == nil {
		// Without a renewal loop its leases last LeaseTTL: fine for calls
		// shorter than that (tests); the app passes one it renews.
		d.Capacity = NewCapacity(d.Store, d.Clock, d.Log, "")
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
	// QueueTimeout is how long to wait for a free slot (0: not at all;
	// negative: DefaultQueueTimeout).
	QueueTimeout time.Duration
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

// busyError answers a caller that found no free slot: 503, Retry-After and
// a JSON-RPC error with code -32000 and reason AGENT_BUSY (SPEC §7.3).
func busyError(w http.ResponseWriter, id json.RawMessage, max int) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", strconv.Itoa(int(busyRetryAfter.Seconds())))
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"jsonrpc": "2.0", "id": id, "error": map[string]any{
			"code":    codeBusy,
			"message": fmt.Sprintf("the agent is busy: all %d of its max_concurrent_tasks slots are in use (X-Queue-Timeout expired)", max),
			"data":    map[string]any{"reason": "AGENT_BUSY", "max_concurrent_tasks": max},
		},
	})
}

// admission is a workspace that may be called now, or why not.
type admission struct {
	ws         store.Workspace
	status     int // HTTP status of the refusal; 0 when admitted
	code       int
	msg        string
	retryAfter time.Duration
	outcome    Kind
}

// admit loads the workspace and applies the checks every call shares:
// unknown/removed → 404, hierarchy → 403, paused/offline/URL-less → 503.
func (g *Gateway) admit(ctx context.Context, caller *auth.Principal, workspaceID string) admission {
	return g.admitFor(ctx, caller, workspaceID, false)
}

// admitFor is admit for a sender that already holds a capacity lease: a
// workspace with a live lease is not treated as offline (SPEC §7.3), so only
// paused, removed and URL-less workspaces refuse it.
func (g *Gateway) admitFor(ctx context.Context, caller *auth.Principal, workspaceID string, leased bool) admission {
	ws, err := g.d.Store.GetWorkspace(ctx, workspaceID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && ws.Status == store.StatusRemoved) {
		return admission{status: http.StatusNotFound, code: codeUnavailable, msg: "workspace " + workspaceID + " not found", outcome: KindNotFound}
	}
	if err != nil {
		return admission{status: http.StatusServiceUnavailable, code: codeUnavailable, msg: "the store is temporarily unavailable", retryAfter: 2 * time.Second, outcome: KindUnavailable}
	}
	if caller != nil && caller.Kind == auth.KindWorkspace {
		ok, err := g.d.CanTalk(ctx, caller.WorkspaceID, ws.ID)
		if err != nil {
			return admission{ws: ws, status: http.StatusServiceUnavailable, code: codeUnavailable, msg: "the store is temporarily unavailable", retryAfter: 2 * time.Second, outcome: KindUnavailable}
		}
		if !ok {
			return admission{ws: ws, status: http.StatusForbidden, code: codeForbidden, msg: fmt.Sprintf("workspace %s may not message %s", caller.WorkspaceID, ws.ID), outcome: KindForbidden}
		}
	}
	switch {
	case ws.Status == store.StatusPaused:
		return admission{ws: ws, status: http.StatusServiceUnavailable, code: codeUnavailable, msg: "workspace is paused", retryAfter: 30 * time.Second, outcome: KindUnavailable}
	case !leased && (ws.Status == store.StatusOffline || ws.Status == store.StatusAwaitingAgent):
		return admission{ws: ws, status: http.StatusServiceUnavailable, code: codeUnavailable, msg: "workspace is " + ws.Status + ": its agent is not connected", retryAfter: 10 * time.Second, outcome: KindUnavailable}
	case ws.URL == "":
		return admission{ws: ws, status: http.StatusServiceUnavailable, code: codeUnavailable, msg: "workspace has no agent URL", retryAfter: 10 * time.Second, outcome: KindUnavailable}
	}
	return admission{ws: ws}
}

// acquire takes a capacity lease for the call; ok is false when it did not
// (busy, caller gone, store down) with the reason in kind.
func (g *Gateway) acquire(ctx context.Context, ws store.Workspace, purpose, ref string, wait time.Duration) (store.Lease, Kind, error) {
	l, err := g.d.Capacity.Acquire(ctx, ws.ID, ws.MaxConcurrentTasks, purpose, ref, wait)
	switch {
	case err == nil:
		return l, "", nil
	case errors.Is(err, ErrBusy):
		return l, KindBusy, err
	case ctx.Err() != nil:
		return l, KindCancelled, err
	}
	return l, KindUnavailable, err
}

// post sends body to the agent with the signed caller header. wrote reports
// whether the request was completely written before an error (so the agent
// may have it).
func (g *Gateway) post(ctx context.Context, ws store.Workspace, caller, version string, body []byte) (resp *http.Response, wrote bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ws.URL, bytes.NewReader(body))
	if err != nil {
		return nil, false, err
	}
	var written atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) { written.Store(i.Err == nil) },
	}))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if version != "" {
		req.Header.Set("A2A-Version", version)
	}
	req.Header.Set(callersig.Header, callersig.Sign(ws.OutboundSecret, caller, body, g.d.Clock.Now()))
	resp, err = g.d.Client.Do(req)
	if errors.Is(err, netguard.ErrRefused) && g.d.Audit != nil {
		// The URL passed the check at registration; refusing it now means
		// its name resolves somewhere it must not (e.g. DNS rebinding).
		if aerr := g.d.Audit.Record(context.WithoutCancel(ctx), audit.Event{
			Kind: audit.KindURLRefused, WorkspaceID: ws.ID, Actor: caller,
			Detail: map[string]string{"url": ws.URL, "reason": err.Error(), "phase": "call"},
		}); aerr != nil {
			g.d.Log.Warn("record security event", "err", aerr)
		}
	}
	return resp, written.Load() || err == nil, err
}

// Forward serves one HTTP call, writing the answer to w.
func (g *Gateway) Forward(ctx context.Context, w http.ResponseWriter, c Call) {
	start := g.d.Clock.Now()
	env, err := parseEnvelope(c.Body, c.A2AVersion)
	if err != nil {
		f, _ := fault.As(err)
		rpcError(w, http.StatusBadRequest, nil, codeInvalidRequest, f.Error(), 0)
		return
	}
	caller := callerID(c.Caller)
	adm := g.admit(ctx, c.Caller, c.WorkspaceID)
	if adm.status != 0 {
		rpcError(w, adm.status, env.id, adm.code, adm.msg, adm.retryAfter)
		return
	}
	ws := adm.ws
	wait := c.QueueTimeout
	if wait < 0 {
		wait = DefaultQueueTimeout
	}
	lease, kind, err := g.acquire(ctx, ws, store.LeaseA2A, string(env.id), wait)
	switch kind {
	case KindBusy:
		g.finish(ctx, store.Lease{}, ws.ID, caller, env, "busy", "", g.d.Clock.Since(start))
		busyError(w, env.id, ws.MaxConcurrentTasks)
		return
	case KindCancelled:
		g.finish(ctx, store.Lease{}, ws.ID, caller, env, "cancelled", "caller went away while queued", g.d.Clock.Since(start))
		return
	case KindUnavailable:
		g.d.Log.Warn("acquire lease", "workspace_id", ws.ID, "err", err)
		rpcError(w, http.StatusServiceUnavailable, env.id, codeUnavailable, "the store is temporarily unavailable", 2*time.Second)
		return
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout) // a caller who disconnects cancels ctx too
	defer cancel()
	resp, _, err := g.post(cctx, ws, caller, c.A2AVersion, env.body)
	if err == nil && resp.StatusCode/100 == 2 && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		status, detail := g.stream(w, resp.Body, cctx)
		resp.Body.Close()
		g.finish(ctx, lease, ws.ID, caller, env, status, detail, g.d.Clock.Since(start))
		return
	}
	a := g.read(resp, err, cctx)
	// The slot is free and the record stored before the caller sees the
	// answer: a caller that sends its next message at once finds the slot,
	// and the activity log already shows this call.
	g.finish(ctx, lease, ws.ID, caller, env, a.status, a.detail, g.d.Clock.Since(start))
	a.write(w, env.id)
}

// answer is an agent's complete (non-streaming) answer or the failure.
type answer struct {
	status, detail string // for the record
	httpStatus     int
	code           int // JSON-RPC error code when the gateway answers itself
	msg            string
	contentType    string
	body           []byte
	wrote          bool
	retryAfter     string
}

func (a answer) write(w http.ResponseWriter, id json.RawMessage) {
	if a.msg != "" {
		if a.code == 0 {
			return // nobody to answer (the caller left)
		}
		rpcError(w, a.httpStatus, id, a.code, a.msg, 0)
		return
	}
	if a.contentType != "" {
		w.Header().Set("Content-Type", a.contentType)
	}
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(a.body)))
	w.WriteHeader(a.httpStatus)
	_, _ = w.Write(a.body)
}

// read reads the agent's answer whole (bounded by the response cap) or maps
// the transport failure.
func (g *Gateway) read(resp *http.Response, err error, ctx context.Context) answer {
	if err != nil {
		switch {
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
			return answer{status: "timeout", detail: err.Error(), httpStatus: http.StatusGatewayTimeout, code: codeTimeout, msg: "the agent did not answer before the deadline (X-Timeout)"}
		case errors.Is(err, netguard.ErrRefused):
			return answer{status: "refused", detail: err.Error(), httpStatus: http.StatusBadGateway, code: codeUpstream, msg: "the agent's address is refused (private or local addresses need --allow-private-agents)"}
		case errors.Is(err, context.Canceled):
			return answer{status: "cancelled", detail: "caller went away", msg: "-"}
		}
		return answer{status: "unreachable", detail: err.Error(), httpStatus: http.StatusBadGateway, code: codeUpstream, msg: "the agent could not be reached"}
	}
	defer resp.Body.Close()
	if ra := resp.Header.Get("Retry-After"); ra != "" && (resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests) {
		// The agent refused the message for now (busy, shutting down): the
		// caller gets its answer and its Retry-After as they are, so that it
		// can tell "try later" from a broken agent.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return answer{status: "agent_busy", detail: "HTTP " + strconv.Itoa(resp.StatusCode) + " Retry-After " + ra,
			httpStatus: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: body, retryAfter: ra}
	}
	if resp.StatusCode/100 != 2 {
		return answer{status: "upstream_error", detail: "HTTP " + strconv.Itoa(resp.StatusCode), httpStatus: http.StatusBadGateway, code: codeUpstream, msg: fmt.Sprintf("the agent answered HTTP %d", resp.StatusCode)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, g.d.ResponseCap+1))
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return answer{status: "timeout", detail: err.Error(), httpStatus: http.StatusGatewayTimeout, code: codeTimeout, msg: "the agent did not finish its answer before the deadline (X-Timeout)"}
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			return answer{status: "cancelled", detail: "caller went away", msg: "-"}
		}
		return answer{status: "upstream_error", detail: err.Error(), httpStatus: http.StatusBadGateway, code: codeUpstream, msg: "the agent's answer broke off"}
	}
	if int64(len(body)) > g.d.ResponseCap {
		return answer{status: "too_large", httpStatus: http.StatusBadGateway, code: codeUpstream, msg: fmt.Sprintf("the agent's answer exceeds %d bytes", g.d.ResponseCap)}
	}
	return answer{status: "ok", httpStatus: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: body}
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
			if errors.Is(ctx.Err(), context.Canceled) {
				return "cancelled", "caller went away"
			}
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

// finish releases the lease (if any) and writes the a2a_receive activity row
// (and, for canvas callers, an admin-only A2A_RESPONSE event) in one
// group-committed transaction.
func (g *Gateway) finish(ctx context.Context, l store.Lease, wsID, caller string, env envelope, status, detail string, d time.Duration) {
	a := store.Activity{
		ID: uuid.Must(uuid.NewV7()).String(), WorkspaceID: wsID, ActivityType: "a2a_receive", Source: "canvas",
		SourceID: caller, TargetID: wsID, Method: env.method, Summary: env.method + " from " + caller,
		RequestBody: capText(string(env.body)), RequestTruncated: len(env.body) > recordBodyMax,
		Status: status, ErrorDetail: capText(detail), DurationMS: d.Milliseconds(),
	}
	if strings.HasPrefix(caller, "workspace:") {
		a.Source = "agent"
	}
	// SPEC §7.5: the canvas shows replies to its own messages; scripts with
	// an admin token and platform senders (scheduler, channels) get none.
	event := caller == "canvas"
	var events []store.EventInput
	if event {
		events = append(events, store.EventInput{
			Type: "A2A_RESPONSE", WorkspaceID: wsID, Audience: store.AudienceAdmin, Actor: caller,
			Payload: mustJSON(map[string]any{"activity_id": a.ID, "method": env.method, "status": status}),
		})
	}
	err := g.d.Capacity.Finish(context.WithoutCancel(ctx), l, wsID, a, events)
	if err != nil {
		g.d.Log.Warn("record a2a call", "workspace_id", wsID, "err", err)
	}
}

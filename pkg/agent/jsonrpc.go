package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/agentplane/agentplane/pkg/callersig"
)

// JSON-RPC and A2A error codes the agent answers with.
const (
	CodeParseError          = -32700
	CodeInvalidRequest      = -32600
	CodeMethodNotFound      = -32601
	CodeInvalidParams       = -32602
	CodeInternal            = -32603
	CodeBusy                = -32000 // a server error; reason AGENT_BUSY or SHUTTING_DOWN
	CodeTaskNotFound        = -32001
	CodeTaskNotCancelable   = -32002
	CodePushNotSupported    = -32003
	CodeUnsupportedOp       = -32004
	CodeVersionNotSupported = -32009
	CodeUnauthenticated     = -31401
)

// streamKeepAlive is how often a quiet SSE stream gets a comment line.
const streamKeepAlive = 15 * time.Second

// busyRetryAfter is the Retry-After of a refused send.
const busyRetryAfter = 5 * time.Second

// errorInfoType is the type of the google.rpc.ErrorInfo detail that A2A 1.0
// errors carry in their data.
const errorInfoType = "type.googleapis.com/google.rpc.ErrorInfo"

// rpcFault is a JSON-RPC error answer.
type rpcFault struct {
	code   int
	reason string // machine-readable, e.g. AGENT_BUSY (sent as ErrorInfo in 1.0)
	msg    string
	status int // HTTP status; 200 unless said otherwise
}

func (f *rpcFault) Error() string { return f.msg }

func fault(code int, reason, format string, args ...any) *rpcFault {
	return &rpcFault{code: code, reason: reason, msg: fmt.Sprintf(format, args...), status: http.StatusOK}
}

// rpcRequest is the JSON-RPC envelope of a request.
type rpcRequest struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

type rpcErrorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

type rpcResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result,omitempty"`
	Error   *rpcErrorBody   `json:"error,omitempty"`
}

var nullID = json.RawMessage("null")

func errorBody(f *rpcFault, v version) *rpcErrorBody {
	b := &rpcErrorBody{Code: f.code, Message: f.msg}
	// A2A 1.0 clients expect data as a list of typed details; 0.3 clients
	// disagree among themselves (object or list), so 0.3 answers carry none.
	if v == v10 && f.reason != "" {
		b.Data = []map[string]any{{"@type": errorInfoType, "reason": f.reason, "domain": "agentplane"}}
	}
	return b
}

func marshalResponse(id json.RawMessage, result any, f *rpcFault, v version) []byte {
	if len(id) == 0 {
		id = nullID
	}
	resp := rpcResponse{JSONRPC: "2.0", ID: id}
	if f != nil {
		resp.Error = errorBody(f, v)
	} else {
		resp.Result = result
	}
	b, err := json.Marshal(resp)
	if err != nil {
		b, _ = json.Marshal(rpcResponse{JSONRPC: "2.0", ID: id, Error: &rpcErrorBody{Code: CodeInternal, Message: "cannot encode the answer"}})
	}
	return b
}

func writeRPC(w http.ResponseWriter, id json.RawMessage, result any, f *rpcFault, v version) {
	status := http.StatusOK
	if f != nil && f.status != 0 {
		status = f.status
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(marshalResponse(id, result, f, v), '\n'))
}

// validID reports whether raw is a JSON-RPC id: a string, a number or null.
func validID(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return true
	}
	switch c := raw[0]; {
	case c == '"', c == '-', c >= '0' && c <= '9':
		return true
	}
	return string(raw) == "null"
}

// methods maps each supported method to its protocol version.
var methods = map[string]version{
	"message/send": v03, "message/stream": v03, "tasks/get": v03, "tasks/cancel": v03,
	"SendMessage": v10, "SendStreamingMessage": v10, "GetTask": v10, "CancelTask": v10,
}

// headerVersion reads A2A-Version: absent means 0.3; an unknown major
// version is refused.
func headerVersion(r *http.Request) (version, bool) {
	h := strings.TrimSpace(r.Header.Get("A2A-Version"))
	switch {
	case h == "":
		return v03, true
	case h == "1" || strings.HasPrefix(h, "1."):
		return v10, true
	case strings.HasPrefix(h, "0."):
		return v03, true
	}
	return v03, false
}

// ServeHTTP serves the agent card at /.well-known/agent-card.json (and the
// older /.well-known/agent.json) and A2A JSON-RPC on POST to any other path.
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	isCard := strings.HasSuffix(p, "/.well-known/agent-card.json") || strings.HasSuffix(p, "/.well-known/agent.json")
	switch {
	case isCard && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		a.serveCard(w, r)
	case r.Method == http.MethodPost && !isCard:
		a.serveRPC(w, r)
	case isCard:
		w.Header().Set("Allow", "GET, HEAD")
		writeHTTPError(w, http.StatusMethodNotAllowed, "the agent card is read with GET")
	default:
		w.Header().Set("Allow", "POST")
		writeHTTPError(w, http.StatusMethodNotAllowed, "send A2A JSON-RPC requests with POST; the card is at /.well-known/agent-card.json")
	}
}

// callerSecret returns the key that verifies X-Agentplane-Caller.
func (a *Agent) callerSecret() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.secret
}

// verifyCaller checks the caller signature; it returns the verified caller
// ("" when there is none and none is required) or a 401 fault.
func (a *Agent) verifyCaller(r *http.Request, body []byte) (string, *rpcFault) {
	header := r.Header.Get(callersig.Header)
	if header == "" && !a.o.RequireSignature {
		return "", nil
	}
	secret := a.callerSecret()
	if len(secret) == 0 {
		if !a.o.RequireSignature {
			return "", nil // not registered yet: nothing to verify with
		}
		f := fault(CodeUnauthenticated, "UNAUTHENTICATED", "the agent cannot verify callers before it has registered with its platform; retry shortly")
		f.status = http.StatusUnauthorized
		return "", f
	}
	c, err := callersig.Verify(secret, header, body, a.now())
	if err != nil {
		a.log.Warn("caller signature rejected", "reason", err.Error(), "remote", r.RemoteAddr, "caller_header_present", header != "")
		f := fault(CodeUnauthenticated, "UNAUTHENTICATED", "the X-Agentplane-Caller signature is missing or invalid")
		f.status = http.StatusUnauthorized
		return "", f
	}
	return c.ID, nil
}

// call is one decoded JSON-RPC request.
type call struct {
	w      http.ResponseWriter
	r      *http.Request
	id     json.RawMessage
	method string
	params json.RawMessage
	v      version
	caller string
	stream bool
}

// fail answers f: as one SSE event when the caller asked for a stream and
// the answer is a 200, so that streaming clients see the error, else as
// plain JSON with f's HTTP status.
func (c *call) fail(f *rpcFault) {
	if c.stream && (f.status == 0 || f.status == http.StatusOK) {
		sw := newSSE(c.w)
		sw.event(marshalResponse(c.id, nil, f, c.v))
		return
	}
	writeRPC(c.w, c.id, nil, f, c.v)
}

func (a *Agent) serveRPC(w http.ResponseWriter, r *http.Request) {
	hv, okVersion := headerVersion(r)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.o.MaxRequestBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			f := fault(CodeInvalidRequest, "REQUEST_TOO_LARGE", "the request body exceeds %d bytes", a.o.MaxRequestBytes)
			f.status = http.StatusRequestEntityTooLarge
			writeRPC(w, nil, nil, f, hv)
			return
		}
		writeRPC(w, nil, nil, fault(CodeParseError, "PARSE_ERROR", "cannot read the request body"), hv)
		return
	}
	caller, f := a.verifyCaller(r, body)
	if f != nil {
		writeRPC(w, nil, nil, f, hv)
		return
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		writeRPC(w, nil, nil, fault(CodeInvalidRequest, "INVALID_REQUEST", "batch requests are not supported"), hv)
		return
	}
	var req rpcRequest
	if err := json.Unmarshal(trimmed, &req); err != nil {
		writeRPC(w, nil, nil, fault(CodeParseError, "PARSE_ERROR", "the body is not a JSON-RPC request object: %v", err), hv)
		return
	}
	if !validID(req.ID) {
		writeRPC(w, nil, nil, fault(CodeInvalidRequest, "INVALID_REQUEST", "id must be a string, a number or null"), hv)
		return
	}
	if req.JSONRPC != "2.0" {
		writeRPC(w, req.ID, nil, fault(CodeInvalidRequest, "INVALID_REQUEST", `jsonrpc must be "2.0"`), hv)
		return
	}
	if !okVersion {
		writeRPC(w, req.ID, nil, fault(CodeVersionNotSupported, "VERSION_NOT_SUPPORTED", "A2A version %q is not supported; this agent speaks 0.3 and 1.0", r.Header.Get("A2A-Version")), hv)
		return
	}
	v, known := methods[req.Method]
	if !known {
		writeRPC(w, req.ID, nil, fault(CodeMethodNotFound, "METHOD_NOT_FOUND", "method %q is not supported", req.Method), hv)
		return
	}
	c := &call{w: w, r: r, id: req.ID, method: req.Method, params: req.Params, v: v, caller: caller,
		stream: req.Method == "message/stream" || req.Method == "SendStreamingMessage"}
	switch req.Method {
	case "message/send", "SendMessage", "message/stream", "SendStreamingMessage":
		a.send(c)
	case "tasks/get", "GetTask":
		a.getTask(c)
	case "tasks/cancel", "CancelTask":
		a.cancel(c)
	}
}

// sendParams accepts the params of message/send (0.3) and SendMessage (1.0).
type sendParams struct {
	Message       *inMessage     `json:"message"`
	Metadata      map[string]any `json:"metadata"`
	Configuration *struct {
		Blocking          *bool           `json:"blocking"`          // 0.3
		ReturnImmediately *bool           `json:"returnImmediately"` // 1.0
		HistoryLength     *int            `json:"historyLength"`
		PushConfig03      json.RawMessage `json:"pushNotificationConfig"`
		PushConfig10      json.RawMessage `json:"taskPushNotificationConfig"`
	} `json:"configuration"`
}

// decodeParams unmarshals params, naming the offending field.
func decodeParams(raw json.RawMessage, dst any) *rpcFault {
	if len(raw) == 0 || string(raw) == "null" {
		return fault(CodeInvalidParams, "INVALID_PARAMS", "params are required")
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fault(CodeInvalidParams, "INVALID_PARAMS", "params.%s: must be %s, not a JSON %s", te.Field, te.Type, te.Value)
		}
		return fault(CodeInvalidParams, "INVALID_PARAMS", "params: %v", err)
	}
	return nil
}

func isSet(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

func (a *Agent) send(c *call) {
	var p sendParams
	if f := decodeParams(c.params, &p); f != nil {
		c.fail(f)
		return
	}
	msg, err := decodeMessage(p.Message)
	if err != nil {
		c.fail(fault(CodeInvalidParams, "INVALID_PARAMS", "params.%v", err))
		return
	}
	nonBlocking, historyLength := false, (*int)(nil)
	if cfg := p.Configuration; cfg != nil {
		if isSet(cfg.PushConfig03) || isSet(cfg.PushConfig10) {
			c.fail(fault(CodePushNotSupported, "PUSH_NOTIFICATION_NOT_SUPPORTED", "push notifications are not supported; use message/stream or poll tasks/get"))
			return
		}
		nonBlocking = (cfg.Blocking != nil && !*cfg.Blocking) || (cfg.ReturnImmediately != nil && *cfg.ReturnImmediately)
		historyLength = cfg.HistoryLength
	}
	if msg.taskID != "" {
		if _, ok := a.lookup(msg.taskID); ok {
			c.fail(fault(CodeUnsupportedOp, "UNSUPPORTED_OPERATION", "continuing task %s is not supported: send a new message without taskId", msg.taskID))
		} else {
			c.fail(fault(CodeTaskNotFound, "TASK_NOT_FOUND", "task %s not found", msg.taskID))
		}
		return
	}
	meta := map[string]any{}
	maps.Copy(meta, p.Metadata)
	maps.Copy(meta, msg.metadata)
	req := &Request{MessageID: msg.id, Parts: msg.parts, Metadata: meta, Caller: c.caller, Streaming: c.stream, Protocol: c.v.String()}
	t, ctx, err := a.startTask(msg, req, c.method)
	// A refusal is 503 + Retry-After with the JSON-RPC error as the body
	// (SPEC §4, as the gateway's own busy answer): the platform's sender
	// reads it as "the agent did not take the message", safe to retry.
	var refusal *rpcFault
	switch {
	case errors.Is(err, errBusy):
		refusal = fault(CodeBusy, "AGENT_BUSY", "agent busy: it is running its maximum of %d concurrent tasks; retry later", a.o.MaxConcurrent)
	case errors.Is(err, errClosing):
		refusal = fault(CodeBusy, "SHUTTING_DOWN", "the agent is shutting down and accepts no new tasks")
	}
	if refusal != nil {
		refusal.status = http.StatusServiceUnavailable
		c.w.Header().Set("Retry-After", strconv.Itoa(int(busyRetryAfter.Seconds())))
		c.fail(refusal)
		return
	}
	a.log.Debug("task started", "task_id", t.id, "method", c.method, "caller", c.caller)
	switch {
	case c.stream:
		a.stream(ctx, c, t)
	case nonBlocking:
		t.setWorking()
		go a.run(ctx, t)
		a.writeSendResult(c, t, historyLength)
	default:
		go a.run(ctx, t)
		select {
		case <-t.done:
		case <-c.r.Context().Done():
			a.cancelTask(t, "the caller went away before the task finished")
			return
		}
		a.writeSendResult(c, t, historyLength)
	}
}

// writeSendResult answers a send with the task: bare in 0.3 (it has a
// "kind"), wrapped as {"task": …} in 1.0.
func (a *Agent) writeSendResult(c *call, t *task, historyLength *int) {
	w := encodeTask(t.snapshot(historyLength), c.v)
	if c.v == v10 {
		writeRPC(c.w, c.id, map[string]any{"task": w}, nil, c.v)
		return
	}
	writeRPC(c.w, c.id, w, nil, c.v)
}

// stream runs t and sends its events as SSE until it ends. A caller that
// goes away cancels the task.
func (a *Agent) stream(ctx context.Context, c *call, t *task) {
	sub, snap := t.subscribe()
	go a.run(ctx, t)
	sw := newSSE(c.w)
	sw.event(marshalResponse(c.id, encodeEvent(t, event{kind: evTask, snap: snap}, c.v), nil, c.v))
	keepAlive := time.NewTicker(streamKeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case ev, ok := <-sub.ch:
			if !ok {
				if sub.overflow {
					sw.event(marshalResponse(c.id, nil, fault(CodeInternal, "STREAM_OVERFLOW",
						"the stream fell behind the task's output and was closed; poll tasks/get for task %s", t.id), c.v))
				}
				return
			}
			sw.event(marshalResponse(c.id, encodeEvent(t, ev, c.v), nil, c.v))
		case <-keepAlive.C:
			sw.comment("keep-alive")
		case <-c.r.Context().Done():
			t.unsubscribe(sub)
			a.cancelTask(t, "the streaming caller went away before the task finished")
			return
		}
	}
}

// getParams accepts the params of tasks/get, GetTask, tasks/cancel and CancelTask.
type getParams struct {
	ID            string `json:"id"`
	HistoryLength *int   `json:"historyLength"`
}

func (a *Agent) taskFromParams(c *call) (*task, *getParams, bool) {
	var p getParams
	if f := decodeParams(c.params, &p); f != nil {
		c.fail(f)
		return nil, nil, false
	}
	if p.ID == "" {
		c.fail(fault(CodeInvalidParams, "INVALID_PARAMS", "params.id is required"))
		return nil, nil, false
	}
	t, ok := a.lookup(p.ID)
	if !ok {
		c.fail(fault(CodeTaskNotFound, "TASK_NOT_FOUND", "task %s not found (unknown, or forgotten after %d newer tasks)", p.ID, a.o.MaxTasks))
		return nil, nil, false
	}
	return t, &p, true
}

// getTask answers tasks/get and GetTask with the bare task.
func (a *Agent) getTask(c *call) {
	t, p, ok := a.taskFromParams(c)
	if !ok {
		return
	}
	writeRPC(c.w, c.id, encodeTask(t.snapshot(p.HistoryLength), c.v), nil, c.v)
}

// cancel answers tasks/cancel and CancelTask with the cancelled task.
func (a *Agent) cancel(c *call) {
	t, p, ok := a.taskFromParams(c)
	if !ok {
		return
	}
	if !a.cancelTask(t, "the task was canceled by "+callerName(c.caller)) {
		c.fail(fault(CodeTaskNotCancelable, "TASK_NOT_CANCELABLE", "task %s is %s and cannot be canceled", t.id, t.state()))
		return
	}
	a.log.Info("task canceled", "task_id", t.id, "caller", c.caller)
	writeRPC(c.w, c.id, encodeTask(t.snapshot(p.HistoryLength), c.v), nil, c.v)
}

func callerName(caller string) string {
	if caller == "" {
		return "its caller"
	}
	return caller
}

// sse writes Server-Sent Events, flushing each.
type sse struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	n  int
}

func newSSE(w http.ResponseWriter) *sse {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sse{w: w, rc: http.NewResponseController(w)}
	_ = s.rc.Flush()
	return s
}

func (s *sse) event(data []byte) {
	s.n++
	_, _ = io.WriteString(s.w, "id: "+strconv.Itoa(s.n)+"\ndata: ")
	_, _ = s.w.Write(data)
	_, _ = io.WriteString(s.w, "\n\n")
	_ = s.rc.Flush()
}

func (s *sse) comment(text string) {
	_, _ = io.WriteString(s.w, ": "+text+"\n\n")
	_ = s.rc.Flush()
}

package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/google/uuid"
)

// Kind classifies the outcome of Send.
type Kind string

// Outcome kinds. Only KindNotSent, KindAgentBusy (the agent said it did not
// take the message) and the refusals before any request (busy, unavailable,
// not found, forbidden) guarantee that the agent did not act on the
// message; a retry after any other kind may deliver it twice.
const (
	KindMessage     Kind = "message"     // the agent replied with a message
	KindTask        Kind = "task"        // the agent returned a task; State says how it ended
	KindRPCError    Kind = "rpc_error"   // the agent answered with a JSON-RPC error
	KindBusy        Kind = "busy"        // no capacity slot freed within the queue wait
	KindTimeout     Kind = "timeout"     // the deadline passed (Written says whether it was sent)
	KindNotSent     Kind = "not_sent"    // transport failure before the request was fully written
	KindSentFailed  Kind = "sent_failed" // transport or HTTP failure after the request was written
	KindAgentBusy   Kind = "agent_busy"  // the agent answered 429 or 503 with Retry-After: it refused the message
	KindUnavailable Kind = "unavailable" // paused, offline, awaiting its agent, no URL, or the store is down
	KindNotFound    Kind = "not_found"   // unknown or removed workspace
	KindForbidden   Kind = "forbidden"   // the hierarchy forbids this caller
	KindCancelled   Kind = "cancelled"   // ctx was cancelled
)

// Terminal task states (in the A2A 0.3 spelling Outcome.State uses).
const (
	StateCompleted     = "completed"
	StateFailed        = "failed"
	StateCanceled      = "canceled"
	StateRejected      = "rejected"
	StateInputRequired = "input-required"
	StateAuthRequired  = "auth-required"
)

// Message is what Send delivers: one text part from the user role.
type Message struct {
	// Text is the prompt.
	Text string
	// MessageID identifies this attempt (a fresh UUID when empty); agents
	// use it to recognise a message they already got.
	MessageID string
	// Metadata travels with the message (e.g. schedule_id, run_id, slot_time).
	Metadata map[string]any
}

// SendOptions tune Send.
type SendOptions struct {
	// Caller names the sender in the signed header and the record, e.g.
	// "scheduler" or "channel:<id>". Default "platform".
	Caller string
	// Purpose and Ref describe the capacity lease (default store.LeaseA2A).
	Purpose, Ref string
	// Lease is a lease the caller acquired already (see Gateway.Acquire);
	// Send uses it instead of acquiring and releases it when done, unless
	// KeepLease is set (the scheduler keeps it across attempts).
	Lease     *store.Lease
	KeepLease bool
	// QueueWait is how long to wait for a free slot when Lease is nil.
	QueueWait time.Duration
	// Timeout bounds the whole exchange, polling included (default 300 s).
	Timeout time.Duration
	// PollInterval is the first pause between polls of a task that is not
	// yet terminal; it doubles up to 5 s. Default 1 s.
	PollInterval time.Duration
}

// Outcome is what happened to one Send.
type Outcome struct {
	Kind Kind
	// Version is the A2A version used ("0.3" or "1.0").
	Version   string
	MessageID string
	// TaskID and State describe a returned task; State uses the 0.3
	// spelling (completed, failed, canceled, rejected, input-required …).
	TaskID string
	State  string
	// Text is the reply's text parts (a task's artifacts, else its status
	// message), joined by newlines; empty for an empty reply.
	Text string
	// Result is the JSON-RPC result as the agent sent it (last poll).
	Result json.RawMessage
	// Detail explains a failure (error text, HTTP status, JSON-RPC error).
	Detail string
	// Written reports whether the request may have reached the agent.
	Written bool
	// RetryAfter is the agent's Retry-After with KindAgentBusy.
	RetryAfter time.Duration
	Duration   time.Duration
}

// Terminal reports whether a task state will not change any more.
func Terminal(state string) bool {
	switch state {
	case StateCompleted, StateFailed, StateCanceled, StateRejected, StateInputRequired, StateAuthRequired:
		return true
	}
	return false
}

// Acquire takes a capacity lease on the workspace for later use with
// SendOptions.Lease (the scheduler waits for capacity without holding a
// worker, then sends). It returns ErrBusy after wait without a slot.
func (g *Gateway) Acquire(ctx context.Context, workspaceID, purpose, ref string, wait time.Duration) (store.Lease, error) {
	ws, err := g.d.Store.GetWorkspace(ctx, workspaceID)
	if err != nil {
		return store.Lease{}, err
	}
	return g.d.Capacity.Acquire(ctx, ws.ID, ws.MaxConcurrentTasks, purpose, ref, wait)
}

// Release frees a lease taken with Acquire that was not passed to Send.
func (g *Gateway) Release(ctx context.Context, l store.Lease) error {
	return g.d.Capacity.Release(ctx, l, nil)
}

// Send delivers one text message to a workspace's agent the way the
// scheduler and the channels need it (SPEC §6.4): the A2A version comes
// from the stored agent card (supportedInterfaces ⇒ 1.0, else 0.3), the send
// is blocking, a task that is not yet terminal is polled until it is or the
// timeout passes. It shares leases, deadlines, signing and records with the
// HTTP route, and never returns an error: everything is in the Outcome.
func (g *Gateway) Send(ctx context.Context, workspaceID string, m Message, o SendOptions) Outcome {
	start := g.d.Clock.Now()
	if m.MessageID == "" {
		m.MessageID = uuid.NewString()
	}
	if o.Caller == "" {
		o.Caller = "platform"
	}
	if o.Purpose == "" {
		o.Purpose = store.LeaseA2A
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	out := Outcome{MessageID: m.MessageID}
	done := func() Outcome {
		out.Duration = g.d.Clock.Since(start)
		return out
	}
	release := func() {
		if o.Lease != nil && !o.KeepLease {
			_ = g.d.Capacity.Release(context.WithoutCancel(ctx), *o.Lease, nil)
		}
	}

	adm := g.admitFor(ctx, nil, workspaceID, o.Lease != nil)
	if adm.status != 0 {
		release()
		out.Kind, out.Detail = adm.outcome, adm.msg
		return done()
	}
	ws := adm.ws
	out.Version = cardVersion(ws.AgentCard)
	env := sendEnvelope(out.Version, m)

	var lease store.Lease
	if o.Lease != nil {
		lease = *o.Lease
	} else {
		var kind Kind
		var err error
		lease, kind, err = g.acquire(ctx, ws, o.Purpose, o.Ref, o.QueueWait)
		if kind != "" {
			out.Kind, out.Detail = kind, err.Error()
			if kind == KindBusy {
				g.finish(ctx, store.Lease{}, ws.ID, o.Caller, env, "busy", "", g.d.Clock.Since(start))
			}
			return done()
		}
	}

	cctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	g.exchange(cctx, ws, o, env, &out)
	for out.Kind == KindTask && !Terminal(out.State) && out.TaskID != "" {
		t := g.d.Clock.NewTimer(o.PollInterval)
		select {
		case <-t.C():
		case <-cctx.Done():
			t.Stop()
		}
		if cctx.Err() != nil {
			out.Kind, out.Detail = ctxKind(cctx), fmt.Sprintf("task %s still %s when the deadline passed", out.TaskID, out.State)
			break
		}
		o.PollInterval = min(2*o.PollInterval, 5*time.Second)
		prev := out
		g.exchange(cctx, ws, o, getEnvelope(out.Version, out.TaskID), &out)
		out.Written = true // the message itself was delivered
		if out.Kind == KindNotSent || out.Kind == KindAgentBusy {
			// A poll that never left, or that the agent refused for now:
			// poll again. It must never surface as "not taken", or the
			// scheduler would send the message a second time.
			out = prev
			out.Written = true
		}
	}
	status := string(out.Kind)
	if out.Kind == KindTask {
		status = "task:" + out.State
	}
	if o.KeepLease {
		lease = store.Lease{} // record only; the caller releases it
	}
	g.finish(ctx, lease, ws.ID, o.Caller, env, status, out.Detail, g.d.Clock.Since(start))
	return done()
}

// ctxKind tells a deadline from a cancelled caller.
func ctxKind(ctx context.Context) Kind {
	if errors.Is(ctx.Err(), context.Canceled) {
		return KindCancelled
	}
	return KindTimeout
}

// exchange posts one JSON-RPC request and fills out with what came back.
func (g *Gateway) exchange(ctx context.Context, ws store.Workspace, o SendOptions, env envelope, out *Outcome) {
	version := ""
	if out.Version == "1.0" {
		version = "1.0"
	}
	resp, wrote, err := g.post(ctx, ws, o.Caller, version, env.body)
	out.Written = out.Written || wrote
	if err != nil {
		out.Detail = err.Error()
		switch {
		case ctx.Err() != nil:
			out.Kind = ctxKind(ctx)
		case wrote:
			out.Kind = KindSentFailed
		default:
			out.Kind = KindNotSent
		}
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, g.d.ResponseCap+1))
	switch {
	case err != nil && ctx.Err() != nil:
		out.Kind, out.Detail = ctxKind(ctx), "the agent did not finish its answer before the deadline"
		return
	case err != nil:
		out.Kind, out.Detail = KindSentFailed, "the agent's answer broke off: "+err.Error()
		return
	case int64(len(body)) > g.d.ResponseCap:
		out.Kind, out.Detail = KindSentFailed, fmt.Sprintf("the agent's answer exceeds %d bytes", g.d.ResponseCap)
		return
	case resp.StatusCode/100 != 2:
		out.Kind, out.Detail = KindSentFailed, fmt.Sprintf("the agent answered HTTP %d", resp.StatusCode)
		if ra := resp.Header.Get("Retry-After"); ra != "" && (resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests) {
			if n, err := strconv.Atoi(ra); err == nil && n >= 0 {
				out.Kind, out.RetryAfter = KindAgentBusy, time.Duration(n)*time.Second
				out.Detail += " with Retry-After " + ra
			}
		}
		return
	}
	parseReply(body, out)
}

// parseReply reads a JSON-RPC answer of either A2A version.
func parseReply(body []byte, out *Outcome) {
	var rpc struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int             `json:"code"`
			Message string          `json:"message"`
			Data    json.RawMessage `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &rpc); err != nil {
		out.Kind, out.Detail = KindSentFailed, "the agent's answer is not JSON-RPC: "+err.Error()
		return
	}
	if rpc.Error != nil {
		out.Kind, out.Detail = KindRPCError, fmt.Sprintf("JSON-RPC error %d: %s", rpc.Error.Code, rpc.Error.Message)
		return
	}
	out.Result = rpc.Result
	var top map[string]json.RawMessage
	if json.Unmarshal(rpc.Result, &top) != nil {
		out.Kind, out.Detail = KindSentFailed, "the agent's result is not an object"
		return
	}
	obj, kind := top, ""
	switch {
	case top["task"] != nil: // 1.0 wrapper
		kind = "task"
		_ = json.Unmarshal(top["task"], &obj)
	case top["message"] != nil && top["parts"] == nil:
		kind = "message"
		_ = json.Unmarshal(top["message"], &obj)
	default: // 0.3: kind field, or the shape
		var k string
		_ = json.Unmarshal(top["kind"], &k)
		switch {
		case k == "task" || k == "message":
			kind = k
		case top["status"] != nil:
			kind = "task"
		default:
			kind = "message"
		}
	}
	if kind == "message" {
		out.Kind, out.Text = KindMessage, partsText(obj["parts"])
		return
	}
	var task struct {
		ID     string `json:"id"`
		Status struct {
			State   string `json:"state"`
			Message *struct {
				Parts json.RawMessage `json:"parts"`
			} `json:"message"`
		} `json:"status"`
		Artifacts []struct {
			Parts json.RawMessage `json:"parts"`
		} `json:"artifacts"`
	}
	raw, _ := json.Marshal(obj)
	_ = json.Unmarshal(raw, &task)
	out.Kind, out.TaskID, out.State = KindTask, task.ID, normalizeState(task.Status.State)
	var texts []string
	for _, a := range task.Artifacts {
		if t := partsText(a.Parts); t != "" {
			texts = append(texts, t)
		}
	}
	if len(texts) == 0 && task.Status.Message != nil {
		if t := partsText(task.Status.Message.Parts); t != "" {
			texts = append(texts, t)
		}
	}
	out.Text = strings.Join(texts, "\n")
	if out.State == StateFailed || out.State == StateRejected {
		out.Detail = out.Text
	}
}

// normalizeState maps TASK_STATE_INPUT_REQUIRED (1.0) to input-required (0.3).
func normalizeState(s string) string {
	s = strings.TrimPrefix(s, "TASK_STATE_")
	s = strings.ToLower(strings.ReplaceAll(s, "_", "-"))
	if s == "cancelled" {
		s = StateCanceled
	}
	return s
}

func partsText(raw json.RawMessage) string {
	var parts []struct {
		Text *string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return ""
	}
	var texts []string
	for _, p := range parts {
		if p.Text != nil && *p.Text != "" {
			texts = append(texts, *p.Text)
		}
	}
	return strings.Join(texts, "\n")
}

// cardVersion picks the A2A version from a stored agent card: a card that
// lists supportedInterfaces is a 1.0 agent.
func cardVersion(card json.RawMessage) string {
	var c struct {
		SupportedInterfaces json.RawMessage `json:"supportedInterfaces"`
	}
	if json.Unmarshal(card, &c) == nil && len(c.SupportedInterfaces) > 0 && string(c.SupportedInterfaces) != "null" {
		return "1.0"
	}
	return "0.3"
}

// sendEnvelope builds the blocking send of SPEC §6.4 for version.
func sendEnvelope(version string, m Message) envelope {
	id := uuid.NewString()
	var method string
	var msg map[string]any
	params := map[string]any{}
	if version == "1.0" {
		method = "SendMessage"
		msg = map[string]any{"messageId": m.MessageID, "role": "ROLE_USER", "parts": []any{map[string]any{"text": m.Text}}}
	} else {
		method = "message/send"
		msg = map[string]any{"kind": "message", "messageId": m.MessageID, "role": "user", "parts": []any{map[string]any{"kind": "text", "text": m.Text}}}
		params["configuration"] = map[string]any{"blocking": true}
	}
	if len(m.Metadata) > 0 {
		msg["metadata"] = m.Metadata
	}
	params["message"] = msg
	body := mustJSON(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	return envelope{body: body, id: mustJSON(id), method: method}
}

func getEnvelope(version, taskID string) envelope {
	id := uuid.NewString()
	method := "tasks/get"
	if version == "1.0" {
		method = "GetTask"
	}
	body := mustJSON(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": map[string]any{"id": taskID}})
	return envelope{body: body, id: mustJSON(id), method: method}
}

// CancelTask asks the agent to cancel a task it returned (0.3 tasks/cancel,
// 1.0 CancelTask), signed as caller. It is best effort: the outcome says
// what the agent answered.
func (g *Gateway) CancelTask(ctx context.Context, workspaceID, version, taskID, caller string) Outcome {
	out := Outcome{Version: version, TaskID: taskID}
	ws, err := g.d.Store.GetWorkspace(ctx, workspaceID)
	if err != nil {
		out.Kind, out.Detail = KindNotFound, err.Error()
		return out
	}
	id := uuid.NewString()
	method := "tasks/cancel"
	if version == "1.0" {
		method = "CancelTask"
	}
	env := envelope{body: mustJSON(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": map[string]any{"id": taskID}}), id: mustJSON(id), method: method}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	g.exchange(cctx, ws, SendOptions{Caller: caller}, env, &out)
	return out
}

package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Platform call settings.
const (
	platformTimeout   = 10 * time.Second
	defaultBeatEvery  = 30 // seconds, until the platform says otherwise
	maxBackoffBeats   = 60 // registration retries back off up to this many seconds
	activityQueue     = 128
	activityTextLimit = 4 << 10
)

// PlatformError is a refusal by the platform: its HTTP status and message.
type PlatformError struct {
	// Status is the HTTP status code.
	Status int
	// Message is the platform's error message.
	Message string
}

// Error describes the refusal.
func (e *PlatformError) Error() string {
	return fmt.Sprintf("platform answered HTTP %d: %s", e.Status, e.Message)
}

// callPlatform sends one JSON request to the platform with the workspace
// token and decodes a 2xx answer into out.
func (a *Agent) callPlatform(ctx context.Context, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, platformTimeout)
	defer cancel()
	payload, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(a.o.Platform, "/")+path, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+a.o.Token)
	resp, err := a.o.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		if e.Error == "" {
			e.Error = http.StatusText(resp.StatusCode)
		}
		return &PlatformError{Status: resp.StatusCode, Message: truncate(e.Error, 500)}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

func httpStatus(err error) int {
	var pe *PlatformError
	if errors.As(err, &pe) {
		return pe.Status
	}
	return 0
}

// register sends POST /registry/register and keeps what the platform
// answers: the workspace id, the caller secret and the beat interval.
func (a *Agent) register(ctx context.Context) (time.Duration, error) {
	a.mu.Lock()
	wsID, u := a.wsID, a.url
	a.mu.Unlock()
	var out struct {
		WorkspaceID       string `json:"workspace_id"`
		WorkspaceStatus   string `json:"workspace_status"`
		HeartbeatInterval int    `json:"heartbeat_interval_seconds"`
		CallerSecret      string `json:"caller_secret"`
	}
	body := map[string]any{"url": u, "agent_card": a.cardFor(u)}
	if wsID != "" {
		body["id"] = wsID
	}
	if err := a.callPlatform(ctx, "/registry/register", body, &out); err != nil {
		return 0, err
	}
	secret, err := base64.RawURLEncoding.DecodeString(out.CallerSecret)
	if err != nil || len(secret) == 0 {
		a.log.Warn("the platform sent no usable caller secret; callers cannot be verified", "workspace_id", out.WorkspaceID)
		secret = nil
	}
	a.mu.Lock()
	if out.WorkspaceID != "" {
		a.wsID = out.WorkspaceID
	}
	if secret != nil {
		a.secret = secret
	}
	a.registers++
	first := a.registers == 1
	wsID = a.wsID
	a.mu.Unlock()
	every := a.beatInterval(out.HeartbeatInterval)
	a.log.Info("registered with the platform", "workspace_id", wsID, "workspace_status", out.WorkspaceStatus,
		"url", u, "heartbeat_every", every.String())
	if first {
		a.report(activityItem{
			ActivityType: "agent_log", Method: "register", Status: "ok",
			Summary: fmt.Sprintf("agent %s started at %s (A2A 0.3 and 1.0; up to %d concurrent tasks)", quote(a.o.Name), u, a.o.MaxConcurrent),
		})
	}
	return every, nil
}

// beatInterval turns the platform's interval in seconds into a duration,
// falling back to 30 s when it sent none.
func (a *Agent) beatInterval(seconds int) time.Duration {
	if seconds <= 0 {
		seconds = defaultBeatEvery
	}
	return time.Duration(seconds) * a.beatUnit
}

// heartbeat sends POST /registry/heartbeat with the agent's real state.
func (a *Agent) heartbeat(ctx context.Context) (time.Duration, error) {
	s := a.Status()
	var out struct {
		HeartbeatInterval int `json:"heartbeat_interval_seconds"`
	}
	body := map[string]any{
		"workspace_id": s.WorkspaceID, "active_tasks": s.ActiveTasks, "current_task": s.CurrentTask,
		"error_rate": s.ErrorRate, "sample_error": s.SampleError, "uptime_seconds": int64(s.Uptime.Seconds()),
	}
	if err := a.callPlatform(ctx, "/registry/heartbeat", body, &out); err != nil {
		return 0, err
	}
	return a.beatInterval(out.HeartbeatInterval), nil
}

// sleepCtx waits d or until ctx ends; it reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// runPlatform registers, then heartbeats at the interval the platform
// returns, in its own goroutine so that long tasks never delay a beat. A
// heartbeat answered 404 registers again; 410 (the workspace was removed)
// ends the loop with ErrRemoved. It returns nil when ctx ends.
func (a *Agent) runPlatform(ctx context.Context) error {
	every := a.beatInterval(0)
	backoff := a.beatUnit
	registered := false
	for ctx.Err() == nil {
		var err error
		if !registered {
			every, err = a.register(ctx)
			if err == nil {
				registered, backoff = true, a.beatUnit
			}
		} else {
			var next time.Duration
			if next, err = a.heartbeat(ctx); err == nil {
				every = next
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := every
		switch status := httpStatus(err); {
		case err == nil:
		case status == http.StatusGone:
			a.log.Error("the platform removed this workspace; stopping", "err", quote(err.Error()))
			return ErrRemoved
		case status == http.StatusNotFound && registered:
			a.log.Warn("the platform does not know this agent any more; registering again", "err", quote(err.Error()))
			registered, wait = false, 0
		case !registered:
			a.log.Warn("registration failed; retrying", "err", quote(err.Error()), "retry_in", backoff.String())
			wait = backoff
			backoff = min(2*backoff, maxBackoffBeats*a.beatUnit)
		default:
			a.log.Warn("heartbeat failed; retrying at the next beat", "err", quote(err.Error()))
		}
		if !sleepCtx(ctx, wait) {
			return nil
		}
	}
	return nil
}

// activityItem is one POST /workspaces/{id}/activity.
type activityItem struct {
	ActivityType string          `json:"activity_type"`
	Method       string          `json:"method,omitempty"`
	Summary      string          `json:"summary,omitempty"`
	SourceID     string          `json:"source_id,omitempty"`
	Status       string          `json:"status,omitempty"`
	ErrorDetail  string          `json:"error_detail,omitempty"`
	DurationMS   int64           `json:"duration_ms,omitempty"`
	RequestBody  json.RawMessage `json:"request_body,omitempty"`
	ResponseBody json.RawMessage `json:"response_body,omitempty"`
}

func textBody(s string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"text": truncate(s, activityTextLimit)})
	return b
}

// taskActivity describes a finished task for the activity log.
func taskActivity(t *task, st state, detail string, d time.Duration) activityItem {
	summary := fmt.Sprintf("task %s %s in %s", t.id, st, d.Round(time.Millisecond))
	if t.request.Caller != "" {
		summary += " (caller " + t.request.Caller + ")"
	}
	item := activityItem{
		ActivityType: "task_update", Method: t.method, Summary: summary, Status: string(st),
		ErrorDetail: detail, DurationMS: d.Milliseconds(), RequestBody: textBody(t.request.Text()),
	}
	if st == stateCompleted {
		item.ResponseBody = textBody(t.replyText())
	}
	return item
}

// report queues an activity item without ever blocking; when the queue is
// full (the platform is slow or down) the item is dropped and counted.
func (a *Agent) report(item activityItem) {
	a.mu.Lock()
	q := a.activity
	a.mu.Unlock()
	if q == nil {
		return
	}
	select {
	case q <- item:
	default:
		a.mu.Lock()
		a.dropped++
		n := a.dropped
		a.mu.Unlock()
		if n == 1 || n%100 == 0 {
			a.log.Warn("activity queue full; dropping activity records", "dropped_total", n)
		}
	}
}

// runActivity posts queued activity until ctx ends, then sends what is
// still queued while the shutdown's deadline allows.
func (a *Agent) runActivity(ctx context.Context) {
	a.mu.Lock()
	q := a.activity
	a.mu.Unlock()
	for {
		select {
		case item := <-q:
			// Not cancelled by the stop: a post in flight finishes (within
			// platformTimeout) rather than losing the record.
			a.postActivity(context.WithoutCancel(ctx), item)
		case <-ctx.Done():
			a.mu.Lock()
			flush := a.flushBy
			a.mu.Unlock()
			if flush == nil {
				return
			}
			for {
				select {
				case item := <-q:
					if flush.Err() != nil {
						return
					}
					a.postActivity(flush, item)
				default:
					return
				}
			}
		}
	}
}

func (a *Agent) postActivity(ctx context.Context, item activityItem) {
	a.mu.Lock()
	wsID := a.wsID
	a.mu.Unlock()
	if wsID == "" {
		return // not registered yet: nowhere to write it
	}
	item.SourceID = wsID
	if err := a.callPlatform(ctx, "/workspaces/"+url.PathEscape(wsID)+"/activity", item, nil); err != nil && ctx.Err() == nil {
		a.log.Warn("activity report failed", "activity_type", item.ActivityType, "err", quote(err.Error()))
	}
}

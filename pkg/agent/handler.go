package agent

import (
	"context"
	"fmt"
	"sync"
	"unicode/utf8"
)

// Handler does the work of one task: it reads the request, writes its reply
// to out and returns. A nil error completes the task with what was written;
// an error fails it, and the error's text is what the caller sees. When ctx
// ends — the task was cancelled, timed out, or its blocking caller went away
// — the handler should return promptly; its result is then ignored.
//
// Handle runs on its own goroutine, at most Options.MaxConcurrent at a time.
type Handler interface {
	Handle(ctx context.Context, req *Request, out *Emitter) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *Request, out *Emitter) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, req *Request, out *Emitter) error {
	return f(ctx, req, out)
}

// Request is the message a task was created for, with who sent it.
type Request struct {
	// TaskID and ContextID identify the task and its conversation.
	TaskID, ContextID string
	// MessageID is the caller's id of the message.
	MessageID string
	// Parts is the message's content.
	Parts []Part
	// Metadata merges the request's and the message's metadata (the
	// message's keys win); the platform's scheduler puts schedule_id, run_id
	// and slot_time here.
	Metadata map[string]any
	// Caller is the verified caller from the platform's signed
	// X-Agentplane-Caller header ("admin", "canvas" or "workspace:<id>"),
	// empty when the request carried no verified signature.
	Caller string
	// Streaming reports whether the caller follows the task as an SSE
	// stream, so that output written to the Emitter reaches it as it comes.
	Streaming bool
	// Protocol is the caller's A2A version, "0.3" or "1.0".
	Protocol string
}

// Text returns the request's text parts, one per line.
func (r *Request) Text() string { return joinText(r.Parts) }

// Emitter receives a handler's output. Text written to it forms the task's
// reply, delivered to streaming callers chunk by chunk as it is written;
// Status reports progress. The reply is capped (Options.MaxOutputBytes):
// output beyond the cap is dropped and a note says so. An Emitter is safe for
// concurrent use.
type Emitter struct {
	mu        sync.Mutex
	t         *task
	max       int
	written   int
	truncated bool
}

// Write appends p to the reply. It never fails: output beyond the cap is
// counted and dropped, so that a producer (like a command's stdout) can
// always be drained.
func (e *Emitter) Write(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.truncated {
		return len(p), nil
	}
	chunk := p
	if room := e.max - e.written; len(chunk) > room {
		chunk = chunk[:validPrefix(chunk, room)]
		e.truncated = true
	}
	e.written += len(chunk)
	text := string(chunk)
	if e.truncated {
		text += fmt.Sprintf("\n[output truncated: the reply is capped at %d bytes]\n", e.max)
	}
	if text != "" {
		e.t.appendReply(text)
	}
	return len(p), nil
}

// WriteString appends s to the reply; see Write.
func (e *Emitter) WriteString(s string) (int, error) { return e.Write([]byte(s)) }

// Status reports progress: streaming callers receive a "working" status
// update carrying text, and the task's status message shows it until the
// task ends.
func (e *Emitter) Status(text string) { e.t.progress(text) }

// Truncated reports whether output was dropped because of the cap.
func (e *Emitter) Truncated() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.truncated
}

// validPrefix returns the length of the longest prefix of p of at most n
// bytes that does not split a UTF-8 sequence.
func validPrefix(p []byte, n int) int {
	if n <= 0 {
		return 0
	}
	if n >= len(p) {
		return len(p)
	}
	for i := n; i >= 0 && i > n-utf8.UTFMax; i-- {
		if i == 0 || utf8.RuneStart(p[i]) {
			return i
		}
	}
	return n // not UTF-8 anyway
}

// Echo is a Handler that replies "echo: " followed by the request's text.
type Echo struct{}

// Handle writes the echo.
func (Echo) Handle(ctx context.Context, req *Request, out *Emitter) error {
	_, err := out.WriteString("echo: " + req.Text())
	return err
}

package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Exec defaults.
const (
	DefaultExecStderrBytes = 64 << 10
	DefaultExecWaitDelay   = 5 * time.Second
	// execChunk is the most output held back while waiting for a newline.
	execChunk = 64 << 10
)

// Exec is a Handler that runs a shell command for each message: `sh -c
// Command` with the message's text on stdin. Its stdout is the reply,
// streamed line by line to streaming callers; a non-zero exit fails the task
// with the command's stderr. When the task is cancelled or times out the
// command's whole process group is killed.
//
// The command inherits the agent's environment without any AGENTPLANE_*
// variable whose name mentions a token or secret, plus AGENTPLANE_TASK_ID,
// AGENTPLANE_CONTEXT_ID and AGENTPLANE_CALLER (the verified caller, or
// empty).
type Exec struct {
	// Command is the shell command line.
	Command string
	// Shell runs Command with "-c" (default "sh").
	Shell string
	// Dir is the working directory (default: the agent's).
	Dir string
	// Env replaces the inherited environment when not nil.
	Env []string
	// MaxStderrBytes caps the stderr kept for the failure message
	// (DefaultExecStderrBytes).
	MaxStderrBytes int
	// WaitDelay bounds how long, after the command is killed or exits, its
	// output pipes may stay open (held by a background child) before they
	// are closed (DefaultExecWaitDelay).
	WaitDelay time.Duration
}

// ExitError is the failure of a command that exited with a non-zero status.
type ExitError struct {
	// Code is the exit status (-1 when a signal ended the command).
	Code int
	// Stderr is what the command wrote to stderr (capped).
	Stderr string
}

// Error says how the command ended, with its stderr.
func (e *ExitError) Error() string {
	msg := fmt.Sprintf("the command exited with status %d", e.Code)
	if e.Code < 0 {
		msg = "the command was killed by a signal"
	}
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

// Handle runs the command for one task.
func (x *Exec) Handle(ctx context.Context, req *Request, out *Emitter) error {
	if strings.TrimSpace(x.Command) == "" {
		return errors.New("no command configured")
	}
	shell := x.Shell
	if shell == "" {
		shell = "sh"
	}
	cmd := exec.CommandContext(ctx, shell, "-c", x.Command)
	cmd.Dir = x.Dir
	env := x.Env
	if env == nil {
		env = childEnv(os.Environ())
	}
	cmd.Env = append(append([]string(nil), env...),
		"AGENTPLANE_TASK_ID="+req.TaskID, "AGENTPLANE_CONTEXT_ID="+req.ContextID, "AGENTPLANE_CALLER="+req.Caller)
	cmd.Stdin = strings.NewReader(req.Text())
	lines := &lineWriter{out: out}
	cmd.Stdout = lines
	maxErr := x.MaxStderrBytes
	if maxErr <= 0 {
		maxErr = DefaultExecStderrBytes
	}
	stderr := &cappedBuffer{max: maxErr}
	cmd.Stderr = stderr
	cmd.WaitDelay = x.WaitDelay
	if cmd.WaitDelay <= 0 {
		cmd.WaitDelay = DefaultExecWaitDelay
	}
	setProcessGroup(cmd)
	err := cmd.Run()
	lines.flush()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		return &ExitError{Code: exitErr.ExitCode(), Stderr: stderr.String()}
	case err != nil:
		return fmt.Errorf("cannot run the command: %w", err)
	}
	return nil
}

// childEnv drops the agent's own credentials from env.
func childEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		upper := strings.ToUpper(name)
		if strings.HasPrefix(upper, "AGENTPLANE_") && (strings.Contains(upper, "TOKEN") || strings.Contains(upper, "SECRET")) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// lineWriter forwards output to the emitter in whole lines (at most
// execChunk bytes are held back waiting for a newline), so that streaming
// callers see each line as the command prints it.
type lineWriter struct {
	mu      sync.Mutex
	out     *Emitter
	pending []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = append(l.pending, p...)
	cut := bytes.LastIndexByte(l.pending, '\n') + 1
	if len(l.pending)-cut > execChunk {
		cut = len(l.pending)
	}
	if cut > 0 {
		_, _ = l.out.Write(l.pending[:cut])
		l.pending = append(l.pending[:0], l.pending[cut:]...)
	}
	return len(p), nil
}

func (l *lineWriter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) > 0 {
		_, _ = l.out.Write(l.pending)
		l.pending = nil
	}
}

// cappedBuffer keeps the first max bytes written to it.
type cappedBuffer struct {
	mu        sync.Mutex
	max       int
	buf       []byte
	truncated bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.max - len(c.buf)
	if len(p) > room {
		c.buf = append(c.buf, p[:validPrefix(p, room)]...)
		c.truncated = true
	} else {
		c.buf = append(c.buf, p...)
	}
	return len(p), nil
}

func (c *cappedBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := strings.ToValidUTF8(string(c.buf), "\uFFFD")
	if c.truncated {
		s += fmt.Sprintf("\n[stderr truncated at %d bytes]", c.max)
	}
	return s
}

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Defaults of Options.
const (
	DefaultListen          = "127.0.0.1:8081"
	DefaultMaxConcurrent   = 4
	DefaultMaxOutputBytes  = 1 << 20
	DefaultMaxTasks        = 1000
	DefaultMaxRequestBytes = 4 << 20
	DefaultShutdownGrace   = 30 * time.Second
)

// Bounds of the error rate reported in heartbeats: the outcomes of at most
// the last errorWindowTasks tasks that finished within errorWindow.
const (
	errorWindowTasks = 50
	errorWindow      = 10 * time.Minute
)

// retainBudget bounds the bytes of finished tasks (requests and replies)
// kept for tasks/get, besides Options.MaxTasks: big replies push old tasks
// out sooner.
const retainBudget = 64 << 20

// Errors returned by Serve and ListenAndServe.
var (
	// ErrRemoved means the platform answered 410 Gone: the workspace was
	// removed and this agent must stop.
	ErrRemoved = errors.New("agent: the platform removed this workspace")
	// ErrClosed means the agent was shut down before Serve was called.
	ErrClosed = errors.New("agent: shut down")
	// ErrServing means Serve was called twice.
	ErrServing = errors.New("agent: already serving")
)

// Skill is one capability listed in the agent card.
type Skill struct {
	// ID identifies the skill, e.g. "summarize".
	ID string
	// Name is a human-readable name.
	Name string
	// Description says what the skill does.
	Description string
	// Tags are keywords; Examples are sample prompts.
	Tags, Examples []string
}

// Options configure an Agent. Only Handler is required; without Platform
// the agent serves A2A without registering anywhere.
type Options struct {
	// Handler does the work of every task (see Echo and Exec).
	Handler Handler
	// Name, Description and Version describe the agent in its card.
	Name, Description, Version string
	// Skills are listed in the card.
	Skills []Skill

	// Listen is the address ListenAndServe listens on (DefaultListen).
	Listen string
	// URL is where the platform and other callers reach the agent; it is
	// registered and published in the card. Empty: derived from the
	// listener, e.g. http://127.0.0.1:8081.
	URL string

	// Platform is the agentplane server, e.g. http://127.0.0.1:8080. When
	// set, Serve registers the agent, heartbeats and reports activity.
	Platform string
	// Token is the workspace's bearer token (required with Platform).
	Token string
	// WorkspaceID is the workspace; empty: learnt from the registration.
	WorkspaceID string

	// MaxConcurrent bounds the tasks running at once; a send beyond it is
	// answered 503 + Retry-After with a JSON-RPC "busy" error
	// (DefaultMaxConcurrent).
	MaxConcurrent int
	// TaskTimeout bounds each task; zero means no limit.
	TaskTimeout time.Duration
	// MaxOutputBytes caps each task's reply (DefaultMaxOutputBytes).
	MaxOutputBytes int
	// MaxTasks bounds the tasks kept for tasks/get; the oldest finished
	// ones are forgotten first (DefaultMaxTasks).
	MaxTasks int
	// MaxRequestBytes caps request bodies (DefaultMaxRequestBytes).
	MaxRequestBytes int64

	// RequireSignature refuses (401) every JSON-RPC request that does not
	// carry a valid X-Agentplane-Caller signature, so that only the
	// platform's gateway can reach the agent. Without it a request that
	// carries the header is still verified, and refused when invalid.
	RequireSignature bool
	// CallerSecret verifies signatures before (or without) registration;
	// registration replaces it with the secret the platform returns.
	CallerSecret []byte

	// ShutdownGrace bounds the graceful shutdown Serve performs when its
	// context ends (DefaultShutdownGrace).
	ShutdownGrace time.Duration
	// HTTPClient makes the calls to the platform (a client with a 10 s
	// timeout by default).
	HTTPClient *http.Client
	// Logger receives the agent's logs (slog.Default() when nil).
	Logger *slog.Logger
}

// Agent serves A2A 0.3 and 1.0 JSON-RPC over HTTP and, with a platform,
// registers, heartbeats and reports activity. It is an http.Handler; Serve
// runs it on a listener with all of the above.
type Agent struct {
	o     Options
	log   *slog.Logger
	now   func() time.Time
	start time.Time
	// beatUnit is how long one "second" of the platform's heartbeat interval
	// is; tests shorten it.
	beatUnit time.Duration

	baseCtx    context.Context // parent of every task; cancelled when a shutdown runs out of time
	baseCancel context.CancelFunc
	wg         sync.WaitGroup // running handlers

	mu        sync.Mutex
	tasks     map[string]*task
	finished  []finishedTask // oldest first
	retained  int            // bytes of the finished tasks kept
	running   []*task        // in start order
	outcomes  []outcome
	closing   bool
	serving   bool
	url       string
	wsID      string
	secret    []byte
	registers int
	activity  chan activityItem
	dropped   int

	closed       chan struct{} // closed when a shutdown starts
	shutdownDone chan struct{} // closed when it ends
	shutdownErr  error
	srv          *http.Server
	stopPlatform context.CancelFunc
	platformDone chan struct{}
	// flushBy bounds the activity reporter's last drain (the shutdown's ctx).
	flushBy context.Context
}

// finishedTask is a finished task kept for tasks/get, with its size.
type finishedTask struct {
	id    string
	bytes int
}

// outcome is how one task ended, for the error rate.
type outcome struct {
	at     time.Time
	failed bool
	detail string
}

// New checks o and returns an agent.
func New(o Options) (*Agent, error) {
	if o.Handler == nil {
		return nil, errors.New("agent: Options.Handler is required")
	}
	if o.Platform != "" {
		u, err := url.Parse(o.Platform)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("agent: Options.Platform must be an http(s) URL, got %q", o.Platform)
		}
		if o.Token == "" {
			return nil, errors.New("agent: Options.Token is required with Options.Platform")
		}
	}
	if o.URL != "" {
		u, err := url.Parse(o.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return nil, fmt.Errorf("agent: Options.URL must be an http(s) URL without credentials, got %q", o.URL)
		}
	}
	if o.RequireSignature && o.Platform == "" && len(o.CallerSecret) == 0 {
		return nil, errors.New("agent: Options.RequireSignature needs Options.Platform or Options.CallerSecret to verify with")
	}
	switch {
	case o.MaxConcurrent < 0, o.MaxOutputBytes < 0, o.MaxTasks < 0, o.MaxRequestBytes < 0, o.TaskTimeout < 0, o.ShutdownGrace < 0:
		return nil, errors.New("agent: Options limits must not be negative")
	}
	if o.MaxConcurrent == 0 {
		o.MaxConcurrent = DefaultMaxConcurrent
	}
	if o.MaxOutputBytes == 0 {
		o.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if o.MaxTasks == 0 {
		o.MaxTasks = DefaultMaxTasks
	}
	if o.MaxTasks <= o.MaxConcurrent {
		o.MaxTasks = o.MaxConcurrent + 1
	}
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if o.ShutdownGrace == 0 {
		o.ShutdownGrace = DefaultShutdownGrace
	}
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.Name == "" {
		o.Name = "agentplane agent"
	}
	if o.Version == "" {
		o.Version = "1.0.0"
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	a := &Agent{
		o: o, log: log, now: time.Now, beatUnit: time.Second,
		tasks: map[string]*task{}, url: o.URL, wsID: o.WorkspaceID,
		secret: append([]byte(nil), o.CallerSecret...),
		closed: make(chan struct{}), shutdownDone: make(chan struct{}),
	}
	a.start = a.now()
	a.baseCtx, a.baseCancel = context.WithCancel(context.Background())
	return a, nil
}

// URL returns the address the agent publishes: Options.URL, or the one
// derived from the listener once Serve runs (empty before).
func (a *Agent) URL() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.url
}

// Status is what the agent reports in its heartbeats.
type Status struct {
	// ActiveTasks counts the handlers running now.
	ActiveTasks int
	// CurrentTask summarizes the most recently started running task.
	CurrentTask string
	// ErrorRate is the share of failed tasks among recent ones (0 when
	// none finished recently); SampleError is the latest failure.
	ErrorRate   float64
	SampleError string
	// Uptime is the time since New.
	Uptime time.Duration
	// Registered reports whether a registration succeeded; WorkspaceID is
	// the workspace it registered as.
	Registered  bool
	WorkspaceID string
}

// Status returns the agent's current state.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Status{ActiveTasks: len(a.running), Uptime: a.now().Sub(a.start), Registered: a.registers > 0, WorkspaceID: a.wsID}
	if n := len(a.running); n > 0 {
		s.CurrentTask = summarize(a.running[n-1])
	}
	cutoff := a.now().Add(-errorWindow)
	var total, failed int
	for _, o := range a.outcomes {
		if o.at.Before(cutoff) {
			continue
		}
		total++
		if o.failed {
			failed++
			s.SampleError = o.detail
		}
	}
	if total > 0 {
		s.ErrorRate = float64(failed) / float64(total)
	}
	return s
}

// summarize describes a task for current_task: the first line of its text.
func summarize(t *task) string {
	text := strings.TrimSpace(t.request.Text())
	if i := strings.IndexByte(text, '\n'); i >= 0 {
		text = text[:i]
	}
	text = truncate(text, 200)
	if text == "" {
		return "task " + t.id
	}
	return text
}

// truncate cuts s to at most n bytes without splitting a character, with
// an ellipsis when it cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := validPrefix([]byte(s), n-len("…"))
	return strings.ToValidUTF8(s[:cut], "") + "…"
}

// quote quotes an untrusted value for a log line, capped.
func quote(s string) string {
	if len(s) > 300 {
		s = truncate(s, 300)
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return strconv.Quote(s)
}

// errBusy and errClosing refuse new tasks.
var (
	errBusy    = errors.New("busy")
	errClosing = errors.New("closing")
)

// startTask admits a new task or refuses it; the caller must run it.
func (a *Agent) startTask(msg *message, req *Request, method string) (*task, context.Context, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closing {
		return nil, nil, errClosing
	}
	if len(a.running) >= a.o.MaxConcurrent {
		return nil, nil, errBusy
	}
	t := newTask(msg, req, method, a.now)
	ctx, cancel := context.WithCancel(a.baseCtx)
	if a.o.TaskTimeout > 0 {
		ctx, cancel = context.WithTimeout(a.baseCtx, a.o.TaskTimeout)
	}
	t.cancel = cancel
	for len(a.tasks) >= a.o.MaxTasks && len(a.finished) > 0 {
		a.forgetOldestLocked()
	}
	a.tasks[t.id] = t
	a.running = append(a.running, t)
	a.wg.Add(1)
	return t, ctx, nil
}

// forgetOldestLocked drops the oldest finished task.
func (a *Agent) forgetOldestLocked() {
	f := a.finished[0]
	delete(a.tasks, f.id)
	a.retained -= f.bytes
	a.finished[0] = finishedTask{}
	a.finished = a.finished[1:]
}

// lookup finds a task.
func (a *Agent) lookup(id string) (*task, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.tasks[id]
	return t, ok
}

// run executes the handler of t and records how it ended.
func (a *Agent) run(ctx context.Context, t *task) {
	defer a.wg.Done()
	defer t.cancel()
	t.setWorking()
	em := &Emitter{t: t, max: a.o.MaxOutputBytes}
	err := a.callHandler(ctx, t, em)
	var (
		st   state
		text string
	)
	switch {
	case err == nil: // done, even if just as its deadline passed
		st, text = stateCompleted, t.replyText()
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		st, text = stateFailed, fmt.Sprintf("the task timed out after %s", a.o.TaskTimeout)
	case ctx.Err() != nil:
		st, text = stateCanceled, "the task was canceled"
	default:
		st, text = stateFailed, err.Error()
		if text == "" {
			text = "the task failed"
		}
	}
	t.finish(st, text)
	a.ended(t)
}

// callHandler runs the handler, turning a panic into a failure.
func (a *Agent) callHandler(ctx context.Context, t *task, em *Emitter) (err error) {
	defer func() {
		if p := recover(); p != nil {
			a.log.Error("task handler panicked", "task_id", t.id, "panic", fmt.Sprint(p))
			err = fmt.Errorf("the agent's handler panicked: %v", p)
		}
	}()
	return a.o.Handler.Handle(ctx, t.request, em)
}

// ended books a task whose handler returned: it frees its slot, counts its
// outcome and reports it to the platform.
func (a *Agent) ended(t *task) {
	st := t.state()
	detail := ""
	if st == stateFailed {
		detail = truncate(t.finalText(), 2000)
	}
	finished := a.now()
	a.mu.Lock()
	for i, x := range a.running {
		if x == t {
			a.running = append(a.running[:i], a.running[i+1:]...)
			break
		}
	}
	size := t.size()
	a.finished = append(a.finished, finishedTask{id: t.id, bytes: size})
	a.retained += size
	for a.retained > retainBudget && len(a.finished) > 1 {
		a.forgetOldestLocked()
	}
	a.outcomes = append(a.outcomes, outcome{at: finished, failed: st == stateFailed, detail: detail})
	if len(a.outcomes) > errorWindowTasks {
		a.outcomes = append(a.outcomes[:0], a.outcomes[len(a.outcomes)-errorWindowTasks:]...)
	}
	a.mu.Unlock()
	a.log.Info("task finished", "task_id", t.id, "method", t.method, "state", string(st),
		"duration_ms", finished.Sub(t.created).Milliseconds(), "caller", t.request.Caller) // verified by the signature
	a.report(taskActivity(t, st, detail, finished.Sub(t.created)))
}

// cancelTask cancels a task that has not ended; it reports false otherwise.
func (a *Agent) cancelTask(t *task, reason string) bool {
	if !t.finish(stateCanceled, reason) {
		return false
	}
	t.cancel()
	return true
}

// Serve serves on ln and, with a platform, registers and heartbeats until
// ctx ends or Shutdown is called; it then shuts down gracefully within
// Options.ShutdownGrace: no new tasks, running ones finish. It returns nil
// after a clean stop, ErrRemoved when the platform removed the workspace,
// or the listener's error.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	a.mu.Lock()
	switch {
	case a.closing:
		a.mu.Unlock()
		return ErrClosed
	case a.serving:
		a.mu.Unlock()
		return ErrServing
	}
	a.serving = true
	if a.url == "" {
		a.url = listenerURL(ln.Addr())
	}
	a.srv = &http.Server{
		Handler:           a,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	srv := a.srv
	platCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	a.stopPlatform = stop
	platErr := make(chan error, 1)
	if a.o.Platform != "" {
		a.activity = make(chan activityItem, activityQueue)
		a.platformDone = make(chan struct{})
		go func() {
			defer close(a.platformDone)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); a.runActivity(platCtx) }()
			platErr <- a.runPlatform(platCtx)
			wg.Wait()
		}()
	}
	a.mu.Unlock()

	a.log.Info("agent listening", "addr", ln.Addr().String(), "url", a.URL(), "platform", a.o.Platform != "",
		"max_concurrent", a.o.MaxConcurrent, "require_signature", a.o.RequireSignature)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	var runErr error
	select {
	case <-ctx.Done():
	case <-a.closed:
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			runErr = fmt.Errorf("agent: serve: %w", err)
		}
	case err := <-platErr:
		runErr = err
	}
	graceCtx, cancel := context.WithTimeout(context.Background(), a.o.ShutdownGrace)
	defer cancel()
	if err := a.Shutdown(graceCtx); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

// ListenAndServe listens on Options.Listen and calls Serve.
func (a *Agent) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.o.Listen)
	if err != nil {
		return fmt.Errorf("agent: listen on %s: %w", a.o.Listen, err)
	}
	return a.Serve(ctx, ln)
}

// listenerURL turns a listening address into a URL, using 127.0.0.1 for an
// unspecified host (give Options.URL to publish another address).
func listenerURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Shutdown stops the agent gracefully: new tasks are refused, the listener
// closes, in-flight requests and running tasks finish, then heartbeats stop
// and queued activity is sent. When ctx ends first, running tasks are
// cancelled and ctx's error is returned. It is safe to call more than once,
// and before or without Serve.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	first := !a.closing
	a.closing = true
	srv, stop, platformDone := a.srv, a.stopPlatform, a.platformDone
	a.mu.Unlock()
	if !first {
		select {
		case <-a.shutdownDone:
			return a.shutdownErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	close(a.closed)
	defer close(a.shutdownDone)
	a.log.Info("agent shutting down", "active_tasks", a.Status().ActiveTasks)

	var err error
	if srv != nil {
		if e := srv.Shutdown(ctx); e != nil {
			err = e
			srv.Close()
		}
	}
	tasksDone := make(chan struct{})
	go func() { a.wg.Wait(); close(tasksDone) }()
	select {
	case <-tasksDone:
	case <-ctx.Done():
		err = ctx.Err()
		a.log.Warn("running tasks did not finish within the shutdown grace; cancelling them", "active_tasks", a.Status().ActiveTasks)
		a.baseCancel()
	}
	if stop != nil {
		// Heartbeats went on while tasks drained; now stop them, letting the
		// activity reporter send what is queued while ctx allows.
		a.mu.Lock()
		a.flushBy = ctx
		a.mu.Unlock()
		stop()
		select {
		case <-platformDone:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	a.baseCancel()
	a.shutdownErr = err
	a.log.Info("agent stopped")
	return err
}

// writeHTTPError answers a non-JSON-RPC failure in plain JSON.
func writeHTTPError(w http.ResponseWriter, status int, msg string) {
	body, _ := json.Marshal(map[string]string{"error": msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

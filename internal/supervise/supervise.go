package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/agentplane/agentplane/internal/clock"
)

// Backoff bounds between restarts, and how long a run must last for the
// backoff to start over.
const (
	MinBackoff   = time.Second
	MaxBackoff   = 30 * time.Second
	HealthyAfter = time.Minute
)

// Func is a supervised loop. It beats through h, returns nil when it is done
// for good, and returns (or panics) on failure to be restarted. It must return
// promptly once ctx is cancelled.
type Func func(ctx context.Context, h *Heart) error

// Supervisor starts supervised loops and waits for them on shutdown.
type Supervisor struct {
	clock    clock.Clock
	log      *slog.Logger
	registry *Registry
	wg       sync.WaitGroup
}

// New returns a supervisor that records liveness in r.
func New(c clock.Clock, log *slog.Logger, r *Registry) *Supervisor {
	return &Supervisor{clock: c, log: log, registry: r}
}

// Registry returns the liveness registry.
func (s *Supervisor) Registry() *Registry { return s.registry }

// Go runs fn under supervision in a new goroutine. name is the subsystem's name
// at /livez; interval is how often it promises to beat.
func (s *Supervisor) Go(ctx context.Context, name string, interval time.Duration, fn Func) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.Run(ctx, name, interval, fn)
	}()
}

// Wait blocks until every loop started with Go has returned.
func (s *Supervisor) Wait() { s.wg.Wait() }

// Run runs fn until it returns nil or ctx is cancelled, restarting it after a
// panic or an error with exponential backoff. It blocks.
func (s *Supervisor) Run(ctx context.Context, name string, interval time.Duration, fn Func) {
	log := s.log.With("subsystem", name)
	backoff := MinBackoff
	for {
		h := s.registry.Declare(name, interval)
		started := s.clock.Now()
		err, panicMsg := runOnce(ctx, fn, h)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			log.Info("subsystem finished; not restarting")
			s.registry.stop(name)
			return
		}
		if s.clock.Since(started) >= HealthyAfter {
			backoff = MinBackoff
		}
		s.registry.restarted(name, panicMsg)
		if panicMsg != "" {
			log.Error("subsystem panicked; restarting", "panic", panicMsg, "stack", err.Error(), "backoff", backoff)
		} else {
			log.Error("subsystem failed; restarting", "err", err, "backoff", backoff)
		}
		if !clock.Sleep(s.clock, backoff, ctx.Done()) {
			return
		}
		backoff = min(backoff*2, MaxBackoff)
	}
}

// errPanicked marks a recovered panic; the stack is in its message.
var errPanicked = errors.New("panic")

func runOnce(ctx context.Context, fn Func, h *Heart) (err error, panicMsg string) {
	defer func() {
		if r := recover(); r != nil {
			panicMsg = fmt.Sprint(r)
			err = fmt.Errorf("%w: %s\n%s", errPanicked, panicMsg, debug.Stack())
		}
	}()
	return fn(ctx, h), ""
}

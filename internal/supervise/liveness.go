package supervise

import (
	"sort"
	"sync"
	"time"

	"github.com/agentplane/agentplane/internal/clock"
)

// StaleAfter is how many missed intervals make a subsystem stale.
const StaleAfter = 3

// Registry records the liveness of every declared subsystem. It is safe for
// concurrent use.
type Registry struct {
	clock clock.Clock
	mu    sync.Mutex
	subs  map[string]*subsystem
}

type subsystem struct {
	interval    time.Duration
	startedAt   time.Time
	lastBeat    time.Time
	restarts    int
	panics      int
	lastPanic   string
	lastPanicAt time.Time
	stopped     bool
}

// NewRegistry returns an empty registry on clock c.
func NewRegistry(c clock.Clock) *Registry {
	return &Registry{clock: c, subs: map[string]*subsystem{}}
}

// Heart is a subsystem's handle for reporting progress.
type Heart struct {
	r    *Registry
	name string
}

// Beat records one unit of progress now.
func (h *Heart) Beat() {
	now := h.r.clock.Now()
	h.r.mu.Lock()
	if s := h.r.subs[h.name]; s != nil {
		s.lastBeat = now
	}
	h.r.mu.Unlock()
}

// Name returns the subsystem's name.
func (h *Heart) Name() string { return h.name }

// Interval returns the declared beat interval.
func (h *Heart) Interval() time.Duration {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	if s := h.r.subs[h.name]; s != nil {
		return s.interval
	}
	return 0
}

// Declare registers (or re-arms) a subsystem with its beat interval and returns
// its heart. Its staleness counts from now until the first beat.
func (r *Registry) Declare(name string, interval time.Duration) *Heart {
	if interval <= 0 {
		interval = time.Second
	}
	now := r.clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.subs[name]
	if s == nil {
		s = &subsystem{}
		r.subs[name] = s
	}
	s.interval = interval
	s.startedAt = now
	s.stopped = false
	return &Heart{r: r, name: name}
}

func (r *Registry) restarted(name string, panicMsg string) {
	now := r.clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.subs[name]
	if s == nil {
		return
	}
	s.restarts++
	if panicMsg != "" {
		s.panics++
		s.lastPanic = panicMsg
		s.lastPanicAt = now
	}
}

func (r *Registry) stop(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.subs[name]; s != nil {
		s.stopped = true
	}
}

// Status is one subsystem's liveness as shown at /admin/liveness.
type Status struct {
	// LastTickAt is the last beat, nil before the first.
	LastTickAt *time.Time `json:"last_tick_at"`
	// SecondsAgo is the time since the last beat (or since the start).
	SecondsAgo float64 `json:"seconds_ago"`
	// IntervalSeconds is the declared beat interval.
	IntervalSeconds float64 `json:"interval_seconds"`
	// Stale is true after StaleAfter intervals without a beat.
	Stale bool `json:"stale"`
	// Restarts counts restarts after panics and errors.
	Restarts int `json:"restarts"`
	// Panics counts recovered panics.
	Panics int `json:"panics"`
	// LastPanic is the last panic's value, empty when none.
	LastPanic string `json:"last_panic"`
	// LastPanicAt is when it happened.
	LastPanicAt *time.Time `json:"last_panic_at,omitempty"`
	// Stopped means the subsystem returned cleanly and is not expected to beat.
	Stopped bool `json:"stopped"`
}

// Snapshot returns the status of every subsystem.
func (r *Registry) Snapshot() map[string]Status {
	now := r.clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]Status, len(r.subs))
	for name, s := range r.subs {
		ref := s.startedAt
		st := Status{
			IntervalSeconds: s.interval.Seconds(),
			Restarts:        s.restarts,
			Panics:          s.panics,
			LastPanic:       s.lastPanic,
			Stopped:         s.stopped,
		}
		if !s.lastBeat.IsZero() {
			t := s.lastBeat.UTC()
			st.LastTickAt = &t
			if s.lastBeat.After(ref) {
				ref = s.lastBeat
			}
		}
		if !s.lastPanicAt.IsZero() {
			t := s.lastPanicAt.UTC()
			st.LastPanicAt = &t
		}
		age := now.Sub(ref)
		st.SecondsAgo = age.Seconds()
		st.Stale = !s.stopped && age > StaleAfter*s.interval
		out[name] = st
	}
	return out
}

// Stale returns the names of stale subsystems, sorted.
func (r *Registry) Stale() []string {
	var out []string
	for name, st := range r.Snapshot() {
		if st.Stale {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

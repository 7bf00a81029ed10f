package auth

import (
	"sync"
	"time"

	"github.com/agentplane/agentplane/internal/clock"
)

// Limiter counts authentication failures per client and blocks a client that
// failed more than Max times within Window (SPEC §9: 20 per minute → 429).
// While blocked, every credential check from that client is refused before
// it is looked at, so guessing cannot continue. State is per replica.
type Limiter struct {
	clock  clock.Clock
	max    int
	window time.Duration
	mu     sync.Mutex
	fails  map[string][]time.Time
	ops    int
}

// maxClients bounds the limiter's memory; stale clients are pruned first.
const maxClients = 100_000

// NewLimiter returns a limiter allowing max failures per window.
func NewLimiter(c clock.Clock, max int, window time.Duration) *Limiter {
	return &Limiter{clock: c, max: max, window: window, fails: map[string][]time.Time{}}
}

// recent drops failures older than the window; caller holds mu.
func (l *Limiter) recent(client string, now time.Time) []time.Time {
	fs := l.fails[client]
	i := 0
	for i < len(fs) && now.Sub(fs[i]) >= l.window {
		i++
	}
	fs = fs[i:]
	if len(fs) == 0 {
		delete(l.fails, client)
		return nil
	}
	l.fails[client] = fs
	return fs
}

// Blocked reports whether client must wait, and how long.
func (l *Limiter) Blocked(client string) (bool, time.Duration) {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	fs := l.recent(client, now)
	if len(fs) <= l.max {
		return false, 0
	}
	return true, l.window - now.Sub(fs[len(fs)-l.max-1])
}

// Fail records one failure of client.
func (l *Limiter) Fail(client string) {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops++
	if l.ops%1024 == 0 {
		for c := range l.fails {
			l.recent(c, now)
		}
	}
	if _, known := l.fails[client]; !known && len(l.fails) >= maxClients {
		// Under a flood of distinct clients, evict one to keep counting the
		// newcomer: failing open here would let a rotating attacker guess.
		for c := range l.fails {
			delete(l.fails, c)
			break
		}
	}
	fs := append(l.recent(client, now), now)
	if len(fs) > l.max+1 {
		fs = fs[len(fs)-l.max-1:]
	}
	l.fails[client] = fs
}

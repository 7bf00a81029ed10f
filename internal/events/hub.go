// Package events delivers events to live subscribers on this node.
//
// Persisted events are written by domain code through store.Tx.AppendEvent in
// the same transaction as their state change (the outbox). After commit the
// store calls Hub.Notify; one reader per node (Hub.Run, supervised as
// "relay") then reads new events from the events table and fans them out.
// Wake-ups may be lost or coalesced — the reader also polls once per beat —
// so a lost wake-up delays an event but never loses it. Ephemeral events
// (WORKSPACE_HEARTBEAT) skip the table and go straight to subscribers through
// PublishEphemeral.
//
// Each subscriber has a bounded queue; a subscriber that falls behind is
// closed with ErrSlowConsumer (it resumes from the store with ?since=) so
// that publishers never block and nothing is dropped silently.
//
// It must never read the events table per subscriber on the live path.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/agentplane/agentplane/internal/clock"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/supervise"
)

// ErrSlowConsumer closes a subscription whose queue overflowed.
var ErrSlowConsumer = errors.New("subscriber fell behind; resume with since=<last id>")

// ErrHubClosed closes subscriptions when the hub stops.
var ErrHubClosed = errors.New("event hub stopped")

// ErrNotReady refuses subscriptions before the hub knows where the live feed
// starts (Prime): a start position of 0 would make a resuming client skip
// its replay.
var ErrNotReady = errors.New("event hub starting")

// ReadBatch bounds one read of the events table.
const ReadBatch = 500

// Hub fans events out to this node's subscribers.
type Hub struct {
	store    store.Store
	clock    clock.Clock
	log      *slog.Logger
	interval time.Duration
	wake     chan struct{}

	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	last   int64
	ready  bool
	closed bool
}

// NewHub returns a hub reading from st. interval is the reader's beat: it
// reads at least that often even without a wake-up.
func NewHub(st store.Store, c clock.Clock, log *slog.Logger, interval time.Duration) *Hub {
	return &Hub{
		store: st, clock: c, log: log, interval: interval,
		wake: make(chan struct{}, 1),
		subs: map[*Subscription]struct{}{},
	}
}

// Interval is how often the reader reads without a wake-up.
func (h *Hub) Interval() time.Duration { return h.interval }

// Notify wakes the reader; it never blocks. The store calls it after a commit
// that appended events (store.Options.OnCommit).
func (h *Hub) Notify(int64) {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Subscription is one subscriber's bounded queue.
type Subscription struct {
	hub  *Hub
	c    chan store.Event
	done chan struct{}
	once sync.Once
	err  error
}

// C delivers events in id order (ephemeral ones interleaved as they happen).
// It is closed when the subscription ends; Err then says why.
func (s *Subscription) C() <-chan store.Event { return s.c }

// Done is closed when the subscription ends.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err says why the subscription ended (nil while it runs or after Close).
func (s *Subscription) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Close ends the subscription.
func (s *Subscription) Close() { s.hub.drop(s, nil) }

// Prime reads where the live feed starts (the newest stored event). It is
// idempotent; Run primes itself, and the server primes before it starts
// streaming.
func (h *Hub) Prime(ctx context.Context) error {
	h.mu.Lock()
	ready := h.ready
	h.mu.Unlock()
	if ready {
		return nil
	}
	latest, err := h.store.LatestEventID(ctx)
	if err != nil {
		return fmt.Errorf("relay: read start position: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.ready {
		h.last, h.ready = latest, true
	}
	return nil
}

// Subscribe registers a subscriber with a queue of size buffer. It reports the
// id the live feed starts after, so a client can replay (after, start] from
// the store first and then follow live without gaps or duplicates. Before
// Prime it fails with ErrNotReady.
func (h *Hub) Subscribe(buffer int) (*Subscription, int64, error) {
	if buffer <= 0 {
		buffer = 256
	}
	s := &Subscription{hub: h, c: make(chan store.Event, buffer), done: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return nil, 0, ErrHubClosed
	case !h.ready:
		return nil, 0, ErrNotReady
	}
	h.subs[s] = struct{}{}
	return s, h.last, nil
}

func (s *Subscription) end(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.done)
		close(s.c)
	})
}

func (h *Hub) drop(s *Subscription, err error) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
	s.end(err)
}

// PublishEphemeral delivers ev to current subscribers without storing it.
func (h *Hub) PublishEphemeral(ev store.Event) {
	ev.ID = 0
	ev.Ephemeral = true
	if ev.CreatedAt.IsZero() {
		ev.CreatedAt = store.TruncateMillis(h.clock.Now())
	}
	h.fanOut([]store.Event{ev})
}

// fanOut sends to every subscriber without blocking; a full queue ends that
// subscription with ErrSlowConsumer.
func (h *Hub) fanOut(evs []store.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fanOutLocked(evs)
}

func (h *Hub) fanOutLocked(evs []store.Event) {
	if len(h.subs) == 0 {
		return
	}
	for i := range evs {
		if evs[i].Encoded == nil {
			evs[i].Encoded, _ = json.Marshal(evs[i])
		}
	}
	for s := range h.subs {
		for _, ev := range evs {
			select {
			case s.c <- ev:
				continue
			default:
			}
			delete(h.subs, s)
			s.end(ErrSlowConsumer)
			break
		}
	}
}

// Position is the id the live feed has reached: every event at or below it
// is committed or known dead. Pollers cap their reads there. ok is false
// before Prime.
func (h *Hub) Position() (id int64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last, h.ready
}

// Subscribers returns the number of live subscriptions.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Run is the node's reader loop; run it under supervise as "relay". It starts
// after the newest stored event and beats after every pass, empty or not.
func (h *Hub) Run(ctx context.Context, heart *supervise.Heart) error {
	if err := h.Prime(ctx); err != nil {
		return err
	}
	timer := h.clock.NewTimer(h.interval)
	defer timer.Stop()
	for {
		if err := h.readPass(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		heart.Beat()
		timer.Reset(h.interval)
		select {
		case <-ctx.Done():
			return nil
		case <-h.wake:
		case <-timer.C():
		}
	}
}

func (h *Hub) readPass(ctx context.Context) error {
	for {
		h.mu.Lock()
		after := h.last
		h.mu.Unlock()
		evs, err := h.store.EventsAfter(ctx, after, ReadBatch)
		if err != nil {
			return fmt.Errorf("relay: read events after %d: %w", after, err)
		}
		if len(evs) == 0 {
			return nil
		}
		// Advance the position and deliver under one lock, so that a
		// subscriber joining meanwhile starts exactly after these events.
		h.mu.Lock()
		h.last = evs[len(evs)-1].ID
		h.fanOutLocked(evs)
		h.mu.Unlock()
		if len(evs) < ReadBatch {
			return nil
		}
	}
}

// Close ends every subscription; used on shutdown.
func (h *Hub) Close() {
	h.mu.Lock()
	subs := h.subs
	h.subs = map[*Subscription]struct{}{}
	h.closed = true
	h.mu.Unlock()
	for s := range subs {
		s.end(ErrHubClosed)
	}
}

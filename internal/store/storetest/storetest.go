// Package storetest is the conformance suite every store back end must pass:
// the same subtests run against SQLite and PostgreSQL, so that domain code can
// rely on one behaviour. Back ends call Run from their own tests.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/clock"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/stretchr/testify/require"
)

// Opener opens a store on a fresh, empty database for one test. Calling the
// returned Reopen opens a second store on the same database (another replica).
type Opener func(t *testing.T, opts store.Options) (s store.Store, reopen func(store.Options) store.Store)

type testBundle struct {
	ctx    context.Context
	clock  *clock.Fake
	store  store.Store
	reopen func(store.Options) store.Store
	hook   *hookRecorder
}

type hookRecorder struct {
	mu  sync.Mutex
	ids []int64
}

func (h *hookRecorder) record(id int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ids = append(h.ids, id)
}

func (h *hookRecorder) calls() []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int64(nil), h.ids...)
}

var start = time.Date(2027, 3, 14, 1, 59, 59, 123_456_789, time.UTC)

func setup(t *testing.T, open Opener) *testBundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	b := &testBundle{ctx: ctx, clock: clock.NewFake(start), hook: &hookRecorder{}}
	b.store, b.reopen = open(t, store.Options{Now: b.clock.Now, OnCommit: b.hook.record})
	require.NoError(t, b.store.Migrate(ctx))
	return b
}

func appendOne(ctx context.Context, s store.Store, in store.EventInput) (store.Event, bool, error) {
	var (
		ev       store.Event
		inserted bool
	)
	err := s.InTx(ctx, func(tx store.Tx) error {
		var err error
		ev, inserted, err = tx.AppendEvent(ctx, in)
		return err
	})
	return ev, inserted, err
}

func event(typ string) store.EventInput {
	return store.EventInput{Type: typ, Audience: store.AudienceAdmin, Actor: "system:test"}
}

// Run runs the whole suite against the back end that open creates.
func Run(t *testing.T, open Opener) {
	runWorkspaces(t, open)
	runActivity(t, open)
	runTickets(t, open)
	runLeases(t, open)
	runSchedules(t, open)
	t.Run("MigrateIsIdempotent", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		require.NoError(t, b.store.Migrate(b.ctx))
		require.NoError(t, b.store.Ready(b.ctx))
	})

	t.Run("ReadyReportsUnmigrated", func(t *testing.T) {
		t.Parallel()
		s, _ := open(t, store.Options{})
		err := s.Ready(context.Background())
		require.ErrorIs(t, err, store.ErrNotMigrated)
		require.NoError(t, s.Migrate(context.Background()))
		require.NoError(t, s.Ready(context.Background()))
	})

	t.Run("MigrateConcurrentReplicas", func(t *testing.T) {
		t.Parallel()
		first, reopen := open(t, store.Options{})
		stores := []store.Store{first}
		for i := 0; i < 3; i++ {
			stores = append(stores, reopen(store.Options{}))
		}
		var wg sync.WaitGroup
		errs := make([]error, len(stores))
		for i, s := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.Migrate(context.Background())
			}()
		}
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "replica %d", i)
			require.NoError(t, stores[i].Ready(context.Background()))
		}
	})

	t.Run("NowUsesInjectedClock", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		now, err := b.store.Now(b.ctx)
		require.NoError(t, err)
		require.Equal(t, start.Truncate(time.Millisecond), now)
		b.clock.Advance(90 * time.Second)
		now, err = b.store.Now(b.ctx)
		require.NoError(t, err)
		require.Equal(t, start.Add(90*time.Second).Truncate(time.Millisecond), now)
		require.Equal(t, time.UTC, now.Location())
	})

	t.Run("NowDatabaseTime", func(t *testing.T) {
		t.Parallel()
		s, _ := open(t, store.Options{})
		now, err := s.Now(context.Background())
		require.NoError(t, err)
		require.WithinDuration(t, time.Now(), now, 5*time.Second)
		require.Zero(t, now.Nanosecond()%int(time.Millisecond), "millisecond precision")
		require.Equal(t, time.UTC, now.Location())
	})

	t.Run("AppendEventRoundTrip", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		in := store.EventInput{
			Type:        "WORKSPACE_ONLINE",
			WorkspaceID: "0190f5d2-8a4b-7c3e-9f1a-2b3c4d5e6f70",
			Audience:    store.AudienceReachable,
			Payload:     json.RawMessage(`{"name":"Security Auditor","status":"online"}`),
			Actor:       "workspace:0190f5d2-8a4b-7c3e-9f1a-2b3c4d5e6f70",
		}
		ev, inserted, err := appendOne(b.ctx, b.store, in)
		require.NoError(t, err)
		require.True(t, inserted)
		require.Positive(t, ev.ID)
		require.Equal(t, start.Truncate(time.Millisecond), ev.CreatedAt)

		got, err := b.store.EventsAfter(b.ctx, 0, 10)
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, ev.ID, got[0].ID)
		require.Equal(t, in.Type, got[0].Type)
		require.Equal(t, in.WorkspaceID, got[0].WorkspaceID)
		require.Equal(t, in.Audience, got[0].Audience)
		require.Equal(t, in.Actor, got[0].Actor)
		require.JSONEq(t, string(in.Payload), string(got[0].Payload))
		require.Equal(t, ev.CreatedAt, got[0].CreatedAt)
		require.Equal(t, []int64{ev.ID}, b.hook.calls())

		latest, err := b.store.LatestEventID(b.ctx)
		require.NoError(t, err)
		require.Equal(t, ev.ID, latest)
	})

	t.Run("AppendEventDefaultsAndValidation", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		ev, _, err := appendOne(b.ctx, b.store, event("GLOBAL"))
		require.NoError(t, err)
		got, err := b.store.EventsAfter(b.ctx, ev.ID-1, 1)
		require.NoError(t, err)
		require.JSONEq(t, `{}`, string(got[0].Payload))
		require.Empty(t, got[0].WorkspaceID)

		_, _, err = appendOne(b.ctx, b.store, store.EventInput{Type: "X", Audience: "everyone"})
		require.ErrorContains(t, err, "invalid audience")
		_, _, err = appendOne(b.ctx, b.store, store.EventInput{Audience: store.AudienceAdmin})
		require.ErrorContains(t, err, "empty type")
		_, _, err = appendOne(b.ctx, b.store, store.EventInput{Type: "X", Audience: store.AudienceAdmin, Payload: json.RawMessage(`{`)})
		require.ErrorContains(t, err, "not valid JSON")
	})

	t.Run("IDsIncreaseInCommitOrder", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		var last int64
		for i := 0; i < 20; i++ {
			ev, _, err := appendOne(b.ctx, b.store, event(fmt.Sprintf("E%d", i)))
			require.NoError(t, err)
			require.Greater(t, ev.ID, last)
			last = ev.ID
		}
	})

	t.Run("DedupeKeyYieldsOneEvent", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		in := event("WORKSPACE_OFFLINE")
		in.DedupeKey = "ws-1:offline:1700000000000"
		_, inserted, err := appendOne(b.ctx, b.store, in)
		require.NoError(t, err)
		require.True(t, inserted)
		_, inserted, err = appendOne(b.ctx, b.store, in)
		require.NoError(t, err)
		require.False(t, inserted)
		got, err := b.store.EventsAfter(b.ctx, 0, 10)
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Len(t, b.hook.calls(), 1, "no wake-up for an event that was not written")
	})

	t.Run("DedupeKeyConcurrentReplicas", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		replicas := []store.Store{b.store, b.reopen(store.Options{Now: b.clock.Now}), b.reopen(store.Options{Now: b.clock.Now})}
		var (
			wg       sync.WaitGroup
			inserted atomic.Int32
		)
		for r := 0; r < len(replicas); r++ {
			for i := 0; i < 5; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					in := event("WORKSPACE_ONLINE")
					in.DedupeKey = "transition-42"
					_, ok, err := appendOne(b.ctx, replicas[r], in)
					if err != nil {
						t.Errorf("replica %d: %v", r, err)
						return
					}
					if ok {
						inserted.Add(1)
					}
				}()
			}
		}
		wg.Wait()
		require.EqualValues(t, 1, inserted.Load())
		// ListEvents, not EventsAfter: racing losers may have burned ids,
		// and the live reader rightly waits those gaps out.
		got, err := b.store.ListEvents(b.ctx, store.EventFilter{Limit: 100})
		require.NoError(t, err)
		require.Len(t, got, 1)
	})

	t.Run("RollbackWritesNothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		boom := errors.New("domain check failed")
		err := b.store.InTx(b.ctx, func(tx store.Tx) error {
			if _, _, err := tx.AppendEvent(b.ctx, event("A")); err != nil {
				return err
			}
			return boom
		})
		require.ErrorIs(t, err, boom)
		got, err := b.store.EventsAfter(b.ctx, 0, 10)
		require.NoError(t, err)
		require.Empty(t, got)
		require.Empty(t, b.hook.calls(), "no wake-up after a rollback")
	})

	t.Run("HookOnlyAfterEvents", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error { return nil }))
		require.Empty(t, b.hook.calls())
		var last int64
		require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error {
			for i := 0; i < 3; i++ {
				ev, _, err := tx.AppendEvent(b.ctx, event("B"))
				if err != nil {
					return err
				}
				last = ev.ID
			}
			return nil
		}))
		require.Equal(t, []int64{last}, b.hook.calls(), "one wake-up per commit, with the highest id")
	})

	t.Run("EventsAfterPages", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		var ids []int64
		for i := 0; i < 7; i++ {
			ev, _, err := appendOne(b.ctx, b.store, event("P"))
			require.NoError(t, err)
			ids = append(ids, ev.ID)
		}
		var seen []int64
		after := int64(0)
		for {
			page, err := b.store.EventsAfter(b.ctx, after, 3)
			require.NoError(t, err)
			if len(page) == 0 {
				break
			}
			require.LessOrEqual(t, len(page), 3)
			for _, ev := range page {
				seen = append(seen, ev.ID)
			}
			after = page[len(page)-1].ID
		}
		require.Equal(t, ids, seen)
	})

	t.Run("PruneKeepsNewAndNeverReusesIDs", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		for i := 0; i < 5; i++ {
			_, _, err := appendOne(b.ctx, b.store, event("OLD"))
			require.NoError(t, err)
		}
		b.clock.Advance(time.Hour)
		keep, _, err := appendOne(b.ctx, b.store, event("NEW"))
		require.NoError(t, err)
		cutoff := start.Add(30 * time.Minute)

		n, err := b.store.PruneEvents(b.ctx, cutoff, 2)
		require.NoError(t, err)
		require.EqualValues(t, 2, n, "batches are bounded")
		n, err = b.store.PruneEvents(b.ctx, cutoff, 100)
		require.NoError(t, err)
		require.EqualValues(t, 3, n)
		got, err := b.store.ListEvents(b.ctx, store.EventFilter{Limit: 10})
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, keep.ID, got[0].ID)

		// Prune the newest row too: the next id must still be larger.
		b.clock.Advance(time.Hour)
		_, err = b.store.PruneEvents(b.ctx, b.clock.Now(), 100)
		require.NoError(t, err)
		next, _, err := appendOne(b.ctx, b.store, event("AFTER"))
		require.NoError(t, err)
		require.Greater(t, next.ID, keep.ID)
	})

	t.Run("ConcurrentWriters", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		other := b.reopen(store.Options{Now: b.clock.Now})
		const writers, each = 8, 25
		var wg sync.WaitGroup
		for w := 0; w < writers; w++ {
			s := b.store
			if w%2 == 1 {
				s = other
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					if _, _, err := appendOne(b.ctx, s, event("C")); err != nil {
						t.Errorf("writer %d: %v", w, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		got, err := b.store.EventsAfter(b.ctx, 0, 1000)
		require.NoError(t, err)
		require.Len(t, got, writers*each)
		for i := 1; i < len(got); i++ {
			require.Greater(t, got[i].ID, got[i-1].ID)
		}
	})

	t.Run("CancelledContext", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		ctx, cancel := context.WithCancel(b.ctx)
		cancel()
		_, _, err := appendOne(ctx, b.store, event("X"))
		require.Error(t, err)
		got, err := b.store.EventsAfter(b.ctx, 0, 10)
		require.NoError(t, err)
		require.Empty(t, got)
	})
}

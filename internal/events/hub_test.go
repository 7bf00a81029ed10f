package events

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/clock"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/store/sqlitestore"
	"github.com/agentplane/agentplane/internal/supervise"
	"github.com/stretchr/testify/require"
)

type testBundle struct {
	ctx   context.Context
	clock *clock.Fake
	store store.Store
	hub   *Hub
	reg   *supervise.Registry
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	b := &testBundle{ctx: ctx, clock: clock.NewFake(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))}
	var hub *Hub
	st, err := sqlitestore.Open(ctx, t.TempDir(), store.Options{Now: b.clock.Now, OnCommit: func(id int64) { hub.Notify(id) }})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	require.NoError(t, st.Migrate(ctx))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub = NewHub(st, b.clock, log, time.Second)
	b.store, b.hub = st, hub
	b.reg = supervise.NewRegistry(b.clock)
	return b
}

func (b *testBundle) start(t *testing.T) {
	t.Helper()
	sup := supervise.New(b.clock, slog.New(slog.NewTextHandler(io.Discard, nil)), b.reg)
	sup.Go(b.ctx, "relay", time.Second, b.hub.Run)
	// The reader is parked on its beat timer once it has read its start.
	require.True(t, b.clock.WaitForTimers(1, 10*time.Second))
}

func (b *testBundle) appendEvent(t *testing.T, typ string) store.Event {
	t.Helper()
	var ev store.Event
	require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error {
		var err error
		ev, _, err = tx.AppendEvent(b.ctx, store.EventInput{Type: typ, Audience: store.AudienceAdmin})
		return err
	}))
	return ev
}

func recv(t *testing.T, s *Subscription) store.Event {
	t.Helper()
	select {
	case ev, ok := <-s.C():
		require.True(t, ok, "subscription closed: %v", s.Err())
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event delivered")
		return store.Event{}
	}
}

func TestHub(t *testing.T) {
	t.Parallel()

	t.Run("CommitWakesSubscribers", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		before := b.appendEvent(t, "BEFORE_START")
		b.start(t)
		sub, startAfter, err := b.hub.Subscribe(10)
		require.NoError(t, err)
		require.Equal(t, before.ID, startAfter, "live feed starts after what is already stored")
		ev := b.appendEvent(t, "WORKSPACE_ONLINE")
		got := recv(t, sub)
		require.Equal(t, ev.ID, got.ID)
		require.Equal(t, "WORKSPACE_ONLINE", got.Type)
	})

	t.Run("LostWakeUpDeliveredOnNextBeat", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.start(t)
		sub, _, err := b.hub.Subscribe(10)
		require.NoError(t, err)
		// Write behind the hub's back: no wake-up at all.
		raw, err := sqlitestore.OpenFile(b.ctx, b.store.(*sqlitestore.Store).Path(), store.Options{Now: b.clock.Now})
		require.NoError(t, err)
		defer raw.Close()
		require.NoError(t, raw.InTx(b.ctx, func(tx store.Tx) error {
			_, _, err := tx.AppendEvent(b.ctx, store.EventInput{Type: "SILENT", Audience: store.AudienceAdmin})
			return err
		}))
		select {
		case <-sub.C():
			t.Fatal("delivered before the beat")
		default:
		}
		b.clock.Advance(time.Second)
		require.Equal(t, "SILENT", recv(t, sub).Type)
	})

	t.Run("ReaderBeatsOnEmptyPasses", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.start(t)
		for i := 0; i < 5; i++ {
			b.clock.Advance(time.Second)
			require.True(t, b.clock.WaitForTimers(1, 10*time.Second))
		}
		require.Empty(t, b.reg.Stale())
		require.NotNil(t, b.reg.Snapshot()["relay"].LastTickAt)
	})

	t.Run("EphemeralGoesLiveOnly", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.start(t)
		sub, _, err := b.hub.Subscribe(10)
		require.NoError(t, err)
		b.hub.PublishEphemeral(store.Event{Type: "WORKSPACE_HEARTBEAT", WorkspaceID: "w1", Audience: store.AudienceReachable})
		got := recv(t, sub)
		require.True(t, got.Ephemeral)
		require.Zero(t, got.ID)
		stored, err := b.store.EventsAfter(b.ctx, 0, 10)
		require.NoError(t, err)
		require.Empty(t, stored)
	})

	t.Run("SlowSubscriberClosedOthersKeepUp", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.start(t)
		slow, _, err := b.hub.Subscribe(2)
		require.NoError(t, err)
		fast, _, err := b.hub.Subscribe(100)
		require.NoError(t, err)
		var ids []int64
		for i := 0; i < 5; i++ {
			ids = append(ids, b.appendEvent(t, "E").ID)
		}
		for _, id := range ids {
			require.Equal(t, id, recv(t, fast).ID)
		}
		<-slow.Done()
		require.ErrorIs(t, slow.Err(), ErrSlowConsumer)
		require.Equal(t, 1, b.hub.Subscribers())
	})

	t.Run("CloseEndsSubscriptions", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, _, err := b.hub.Subscribe(1)
		require.ErrorIs(t, err, ErrNotReady, "no start position before Prime")
		require.NoError(t, b.hub.Prime(b.ctx))
		sub, _, err := b.hub.Subscribe(1)
		require.NoError(t, err)
		b.hub.Close()
		<-sub.Done()
		require.ErrorIs(t, sub.Err(), ErrHubClosed)
		_, _, err = b.hub.Subscribe(1)
		require.ErrorIs(t, err, ErrHubClosed)
	})
}

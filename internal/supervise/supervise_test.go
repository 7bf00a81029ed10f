package supervise

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/clock"
	"github.com/stretchr/testify/require"
)

// recordingClock is a fake clock that reports every timer it hands out, so a
// test can see the backoff the supervisor chose without sleeping.
type recordingClock struct {
	*clock.Fake
	timers chan time.Duration
}

func (c *recordingClock) NewTimer(d time.Duration) clock.Timer {
	t := c.Fake.NewTimer(d)
	c.timers <- d
	return t
}

type testBundle struct {
	clock *recordingClock
	reg   *Registry
	sup   *Supervisor
	ctx   context.Context
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	c := &recordingClock{Fake: clock.NewFake(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)), timers: make(chan time.Duration, 100)}
	reg := NewRegistry(c)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &testBundle{clock: c, reg: reg, sup: New(c, slog.New(slog.NewTextHandler(io.Discard, nil)), reg), ctx: ctx}
}

// nextBackoff waits for the supervisor to park on a backoff timer.
func (b *testBundle) nextBackoff(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-b.clock.timers:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("supervisor did not start a backoff timer")
		return 0
	}
}

func TestRun(t *testing.T) {
	t.Parallel()

	t.Run("PanickingLoopIsRestartedAndCounted", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		runs := make(chan int, 10)
		n := 0
		b.sup.Go(b.ctx, "scheduler", time.Second, func(ctx context.Context, h *Heart) error {
			n++
			runs <- n
			if n <= 2 {
				panic("boom " + string(rune('0'+n)))
			}
			h.Beat()
			<-ctx.Done()
			return ctx.Err()
		})
		require.Equal(t, 1, <-runs)
		require.Equal(t, MinBackoff, b.nextBackoff(t))
		b.clock.Advance(MinBackoff)
		require.Equal(t, 2, <-runs)
		require.Equal(t, 2*MinBackoff, b.nextBackoff(t))
		b.clock.Advance(2 * MinBackoff)
		require.Equal(t, 3, <-runs)

		st := b.reg.Snapshot()["scheduler"]
		require.Equal(t, 2, st.Restarts)
		require.Equal(t, 2, st.Panics)
		require.Equal(t, "boom 2", st.LastPanic)
		require.NotNil(t, st.LastPanicAt)
	})

	t.Run("ErrorIsRestarted", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		runs := make(chan struct{}, 10)
		b.sup.Go(b.ctx, "relay", time.Second, func(ctx context.Context, h *Heart) error {
			runs <- struct{}{}
			return errors.New("connection refused")
		})
		<-runs
		b.nextBackoff(t)
		b.clock.Advance(MinBackoff)
		<-runs
		require.Equal(t, 2*MinBackoff, b.nextBackoff(t))
		st := b.reg.Snapshot()["relay"]
		require.Equal(t, 2, st.Restarts)
		require.Zero(t, st.Panics)
	})

	t.Run("CleanReturnIsNotRestarted", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		runs := 0
		b.sup.Run(b.ctx, "oneshot", time.Second, func(ctx context.Context, h *Heart) error {
			runs++
			return nil
		})
		require.Equal(t, 1, runs)
		b.clock.Advance(time.Hour)
		st := b.reg.Snapshot()["oneshot"]
		require.True(t, st.Stopped)
		require.False(t, st.Stale, "a finished loop is not stale")
		require.Zero(t, st.Restarts)
	})

	t.Run("StopsOnCancelDuringBackoff", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx, cancel := context.WithCancel(b.ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			b.sup.Run(ctx, "x", time.Second, func(ctx context.Context, h *Heart) error { panic("always") })
		}()
		b.nextBackoff(t)
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	})

	t.Run("BackoffDoublesCapsAndResetsAfterHealthyMinute", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		healthyRun := make(chan struct{})
		n := 0
		b.sup.Go(b.ctx, "flaky", time.Second, func(ctx context.Context, h *Heart) error {
			n++
			if n == 8 {
				// This run stays healthy for a minute before failing.
				close(healthyRun)
				clock.Sleep(b.clock, HealthyAfter, ctx.Done())
			}
			return errors.New("flaky")
		})
		want := []time.Duration{1, 2, 4, 8, 16, 30, 30}
		for _, w := range want {
			require.Equal(t, w*time.Second, b.nextBackoff(t))
			b.clock.Advance(w * time.Second)
		}
		<-healthyRun
		require.Equal(t, HealthyAfter, b.nextBackoff(t)) // the run's own sleep
		b.clock.Advance(HealthyAfter)
		require.Equal(t, MinBackoff, b.nextBackoff(t), "backoff starts over after a healthy minute")
	})
}

func TestRegistry(t *testing.T) {
	t.Parallel()

	t.Run("StuckLoopTurnsStale", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		beaten := make(chan struct{})
		b.sup.Go(b.ctx, "scheduler", time.Second, func(ctx context.Context, h *Heart) error {
			h.Beat()
			close(beaten)
			<-ctx.Done() // stuck: no more beats, no panic
			return nil
		})
		<-beaten
		b.clock.Advance(3 * time.Second)
		require.Empty(t, b.reg.Stale(), "exactly three intervals is not yet stale")
		b.clock.Advance(time.Millisecond)
		require.Equal(t, []string{"scheduler"}, b.reg.Stale())
		st := b.reg.Snapshot()["scheduler"]
		require.True(t, st.Stale)
		require.InDelta(t, 3.001, st.SecondsAgo, 1e-9)
		require.NotNil(t, st.LastTickAt)
	})

	t.Run("NeverBeatenCountsFromStart", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.clock.Advance(time.Hour) // before declaration: does not count
		h := b.reg.Declare("relay", 2*time.Second)
		require.Empty(t, b.reg.Stale())
		b.clock.Advance(6*time.Second + time.Millisecond)
		require.Equal(t, []string{"relay"}, b.reg.Stale())
		require.Nil(t, b.reg.Snapshot()["relay"].LastTickAt)
		h.Beat()
		require.Empty(t, b.reg.Stale(), "a beat makes it fresh again")
	})
}

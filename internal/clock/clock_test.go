package clock

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFake(t *testing.T) {
	t.Parallel()

	t.Run("TimerFiresOnlyWhenDue", func(t *testing.T) {
		t.Parallel()
		start := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
		f := NewFake(start)
		tm := f.NewTimer(10 * time.Second)
		f.Advance(9 * time.Second)
		select {
		case <-tm.C():
			t.Fatal("fired early")
		default:
		}
		f.Advance(time.Second)
		require.Equal(t, start.Add(10*time.Second), <-tm.C())
		require.Equal(t, 0, f.Timers())
	})

	t.Run("StopAndReset", func(t *testing.T) {
		t.Parallel()
		f := NewFake(time.Unix(0, 0))
		tm := f.NewTimer(time.Second)
		require.True(t, tm.Stop())
		require.False(t, tm.Stop())
		f.Advance(2 * time.Second)
		select {
		case <-tm.C():
			t.Fatal("stopped timer fired")
		default:
		}
		require.False(t, tm.Reset(time.Second))
		f.Advance(time.Second)
		<-tm.C()
	})

	t.Run("SleepReturnsOnDone", func(t *testing.T) {
		t.Parallel()
		f := NewFake(time.Unix(0, 0))
		done := make(chan struct{})
		res := make(chan bool)
		go func() { res <- Sleep(f, time.Hour, done) }()
		require.True(t, f.WaitForTimers(1, 5*time.Second))
		close(done)
		require.False(t, <-res)
	})

	t.Run("SleepReturnsWhenAdvanced", func(t *testing.T) {
		t.Parallel()
		f := NewFake(time.Unix(0, 0))
		res := make(chan bool)
		go func() { res <- Sleep(f, time.Minute, nil) }()
		require.True(t, f.WaitForTimers(1, 5*time.Second))
		f.Advance(time.Minute)
		require.True(t, <-res)
	})
}

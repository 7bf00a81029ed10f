package gateway

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/clock"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/store/pgstore"
	"github.com/agentplane/agentplane/internal/store/sqlitestore"
	"github.com/agentplane/agentplane/internal/supervise"
	"github.com/agentplane/agentplane/internal/testenv"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func backends() []string {
	if os.Getenv(testenv.PostgresURLEnv) != "" || testenv.InCI() {
		return []string{"sqlite", "postgres"}
	}
	return []string{"sqlite"}
}

// openStore opens a migrated store; reopen opens another one on the same
// database (another replica's pool).
func openStore(t *testing.T, backend string, now func() time.Time) (st store.Store, reopen func() store.Store) {
	t.Helper()
	open := func() func() store.Store {
		if backend == "postgres" {
			url := testenv.PostgresSchema(t)
			return func() store.Store {
				s, err := pgstore.Open(context.Background(), url, store.Options{Now: now})
				require.NoError(t, err)
				t.Cleanup(func() { s.Close() })
				return s
			}
		}
		dir := t.TempDir()
		return func() store.Store {
			s, err := sqlitestore.Open(context.Background(), dir, store.Options{Now: now})
			require.NoError(t, err)
			t.Cleanup(func() { s.Close() })
			return s
		}
	}()
	st = open()
	require.NoError(t, st.Migrate(context.Background()))
	return st, open
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Many callers on two replicas hammer three slots of one workspace (and one
// slot of another): never more than the slots run at once, every caller gets
// through, and nothing is left held.
func TestCapacityNeverOvercommitsUnderContention(t *testing.T) {
	t.Parallel()
	for _, backend := range backends() {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			st, reopen := openStore(t, backend, nil)
			second := reopen() // a second replica: its own pool (or file handle)
			replicas := []*Capacity{NewCapacity(st, clock.Real{}, quiet, ""), NewCapacity(second, clock.Real{}, quiet, "")}
			wsA, wsB := uuid.NewString(), uuid.NewString()
			limits := map[string]int{wsA: 3, wsB: 1}
			var (
				running = map[string]*atomic.Int32{wsA: {}, wsB: {}}
				peak    = map[string]*atomic.Int32{wsA: {}, wsB: {}}
				wg      sync.WaitGroup
			)
			const callers, rounds = 16, 15
			for i := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := replicas[i%2]
					ws := wsA
					if i%4 == 3 {
						ws = wsB
					}
					for range rounds {
						l, err := c.Acquire(context.Background(), ws, limits[ws], store.LeaseA2A, "t", 30*time.Second)
						if err != nil {
							t.Error(err)
							return
						}
						n := running[ws].Add(1)
						for {
							p := peak[ws].Load()
							if n <= p || peak[ws].CompareAndSwap(p, n) {
								break
							}
						}
						running[ws].Add(-1)
						if err := c.Release(context.Background(), l, nil); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			require.LessOrEqual(t, peak[wsA].Load(), int32(3))
			require.LessOrEqual(t, peak[wsB].Load(), int32(1))
			for _, c := range replicas {
				require.Zero(t, c.Held())
			}
			now, err := st.Now(context.Background())
			require.NoError(t, err)
			counts, err := st.InflightCounts(context.Background(), []string{wsA, wsB}, now)
			require.NoError(t, err)
			require.Empty(t, counts)
		})
	}
}

// The renewal loop keeps a running call's lease alive past its first
// expiry, by store time, and releases what is left on shutdown.
func TestCapacityRenewalAndShutdown(t *testing.T) {
	t.Parallel()
	for _, backend := range backends() {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			clk := clock.NewFake(time.Date(2027, 5, 1, 12, 0, 0, 0, time.UTC))
			st, _ := openStore(t, backend, clk.Now)
			c := NewCapacity(st, clk, quiet, "replica-1")
			ctx := context.Background()
			ws := uuid.NewString()
			_, err := c.Acquire(ctx, ws, 1, store.LeaseCron, "run", 0)
			require.NoError(t, err)

			live := func(at time.Time) int {
				n, err := st.InflightCounts(ctx, []string{ws}, at)
				require.NoError(t, err)
				return n[ws]
			}
			start := clk.Now()
			require.Equal(t, 0, live(start.Add(LeaseTTL)), "without renewal the lease ends after LeaseTTL")

			loopCtx, stop := context.WithCancel(ctx)
			heart := supervise.NewRegistry(clk).Declare("lease-renewal", LeaseRenew)
			done := make(chan error, 1)
			timers := clk.Timers()
			go func() { done <- c.RunRenewal(loopCtx, heart) }()
			for range 3 { // three renewals, 10 s apart
				require.True(t, clk.WaitForTimers(timers+1, 10*time.Second))
				clk.Advance(LeaseRenew)
			}
			require.True(t, clk.WaitForTimers(timers+1, 10*time.Second))
			require.Equal(t, 1, live(start.Add(LeaseTTL+20*time.Second)), "renewed past its first expiry")
			_, err = c.Acquire(ctx, ws, 1, store.LeaseA2A, "other", 0)
			require.ErrorIs(t, err, ErrBusy)

			stop()
			require.NoError(t, <-done)
			require.Equal(t, 0, live(clk.Now()), "shutdown released the replica's leases")
		})
	}
}

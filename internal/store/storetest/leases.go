package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/stretchr/testify/require"
)

func (b *testBundle) acquire(t *testing.T, s store.Store, ws, holder string, max int, now time.Time) (store.Lease, bool) {
	t.Helper()
	var (
		got store.Lease
		ok  bool
	)
	l := store.Lease{ID: newID(), WorkspaceID: ws, Holder: holder, Purpose: store.LeaseA2A, Ref: "r", AcquiredAt: now, ExpiresAt: now.Add(30 * time.Second)}
	require.NoError(t, s.InTx(b.ctx, func(tx store.Tx) error {
		var err error
		got, ok, err = tx.AcquireLease(b.ctx, l, max)
		return err
	}))
	return got, ok
}

func runLeases(t *testing.T, open Opener) {
	t.Run("LeaseSlotsFillReleaseAndExpire", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		now := b.clock.Now().Truncate(time.Millisecond).UTC()
		ws := newID()
		a, ok := b.acquire(t, b.store, ws, "r1", 2, now)
		require.True(t, ok)
		require.Equal(t, 0, a.Slot)
		c, ok := b.acquire(t, b.store, ws, "r2", 2, now)
		require.True(t, ok)
		require.Equal(t, 1, c.Slot)
		_, ok = b.acquire(t, b.store, ws, "r1", 2, now)
		require.False(t, ok, "both slots are taken")

		counts, err := b.store.InflightCounts(b.ctx, []string{ws, newID()}, now)
		require.NoError(t, err)
		require.Equal(t, map[string]int{ws: 2}, counts)

		// Releasing slot 0 frees exactly it; the next grant takes it.
		require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error { return tx.ReleaseLeases(b.ctx, []string{a.ID, "unknown"}) }))
		d, ok := b.acquire(t, b.store, ws, "r1", 2, now)
		require.True(t, ok)
		require.Equal(t, 0, d.Slot)

		// Renewal keeps r1's lease alive past the first expiry; r2's expires
		// and is taken over in place by a new holder.
		n, err := b.store.RenewLeases(b.ctx, "r1", now.Add(90*time.Second))
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
		later := now.Add(30 * time.Second) // r2's expiry instant: no longer live
		e, ok := b.acquire(t, b.store, ws, "r3", 2, later)
		require.True(t, ok)
		require.Equal(t, 1, e.Slot)
		require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error {
			n, err := tx.CountLeases(b.ctx, ws, later)
			require.Equal(t, 2, n)
			return err
		}))
		// The taken-over holder's release does not free the new holder's slot.
		require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error { return tx.ReleaseLeases(b.ctx, []string{c.ID}) }))
		_, ok = b.acquire(t, b.store, ws, "r1", 2, later)
		require.False(t, ok)

		// A lower max (the operator lowered max_concurrent_tasks) counts only
		// slots below it.
		_, ok = b.acquire(t, b.store, newID(), "r1", 0, later)
		require.False(t, ok)

		n, err = b.store.ReleaseHolder(b.ctx, "r1")
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
		n, err = b.store.PruneExpired(b.ctx, later.Add(time.Hour), 100)
		require.NoError(t, err)
		require.EqualValues(t, 1, n, "r3's expired lease is pruned")
		counts, err = b.store.InflightCounts(b.ctx, []string{ws}, later)
		require.NoError(t, err)
		require.Empty(t, counts)
	})

	t.Run("LeaseNeverDoubleGrantedAcrossReplicas", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		now := b.clock.Now().Truncate(time.Millisecond).UTC()
		replicas := []store.Store{b.store, b.reopen(store.Options{Now: b.clock.Now}), b.reopen(store.Options{Now: b.clock.Now})}
		ws := newID()
		const max, tries = 3, 24
		var (
			mu      sync.Mutex
			granted []int
			wg      sync.WaitGroup
		)
		for i := range tries {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := replicas[i%len(replicas)]
				l := store.Lease{ID: newID(), WorkspaceID: ws, Holder: "h", Purpose: store.LeaseA2A, AcquiredAt: now, ExpiresAt: now.Add(time.Minute)}
				err := s.InTx(context.Background(), func(tx store.Tx) error {
					got, ok, err := tx.AcquireLease(b.ctx, l, max)
					if ok {
						mu.Lock()
						granted = append(granted, got.Slot)
						mu.Unlock()
					}
					return err
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		require.ElementsMatch(t, []int{0, 1, 2}, granted, "exactly max grants, one per slot")
	})
}

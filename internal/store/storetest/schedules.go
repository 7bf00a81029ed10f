package storetest

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/stretchr/testify/require"
)

func (b *testBundle) insertSchedule(t *testing.T, ws, name string, next time.Time) store.Schedule {
	t.Helper()
	now := b.clock.Now().Truncate(time.Millisecond).UTC()
	s := store.Schedule{ID: newID(), WorkspaceID: ws, Name: name, Spec: json.RawMessage(`{"cron_expr":"* * * * *"}`),
		Enabled: true, NextRunAt: next, CreatedAt: now, UpdatedAt: now, UpdatedBy: "admin:test"}
	require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error { return tx.InsertSchedule(b.ctx, s) }))
	return s
}

func runSchedules(t *testing.T, open Opener) {
	t.Run("ScheduleRoundTripNamesAndDue", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		ws := b.insertWorkspace(t, nil)
		now := b.clock.Now().Truncate(time.Millisecond).UTC()
		a := b.insertSchedule(t, ws.ID, "audit", now.Add(time.Minute))
		got, err := b.store.GetSchedule(b.ctx, a.ID)
		require.NoError(t, err)
		require.JSONEq(t, string(a.Spec), string(got.Spec))
		require.JSONEq(t, `{}`, string(got.State))
		got.Spec, got.State, a.Spec, a.State = nil, nil, nil, nil
		require.Equal(t, a, got)

		// Names are unique among live schedules of a workspace only.
		dup := store.Schedule{ID: newID(), WorkspaceID: ws.ID, Name: "audit", Spec: json.RawMessage(`{}`), CreatedAt: now, UpdatedAt: now}
		err = b.store.InTx(b.ctx, func(tx store.Tx) error { return tx.InsertSchedule(b.ctx, dup) })
		require.ErrorIs(t, err, store.ErrConflict)
		other := b.insertWorkspace(t, nil)
		b.insertSchedule(t, other.ID, "audit", time.Time{})

		due, ok, err := b.store.NextDue(b.ctx)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, now.Add(time.Minute), due)

		// Delete (soft): the name is free again and it is never due.
		require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error {
			s, err := tx.LockSchedule(b.ctx, a.ID)
			require.NoError(t, err)
			s.DeletedAt, s.Enabled, s.State = now, false, json.RawMessage(`{"run_count":3}`)
			return tx.UpdateSchedule(b.ctx, s)
		}))
		_, ok, err = b.store.NextDue(b.ctx)
		require.NoError(t, err)
		require.False(t, ok)
		list, err := b.store.ListSchedules(b.ctx, ws.ID, 0)
		require.NoError(t, err)
		require.Empty(t, list)
		b.insertSchedule(t, ws.ID, "audit", time.Time{})
		gone, err := b.store.GetSchedule(b.ctx, a.ID)
		require.NoError(t, err)
		require.Equal(t, now, gone.DeletedAt)
		require.JSONEq(t, `{"run_count":3}`, string(gone.State))
		_, err = b.store.GetSchedule(b.ctx, newID())
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("ClaimSkipsLockedRowsAcrossReplicas", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		ws := b.insertWorkspace(t, nil)
		now := b.clock.Now().Truncate(time.Millisecond).UTC()
		for i := range 20 {
			b.insertSchedule(t, ws.ID, string(rune('a'+i)), now.Add(-time.Duration(i)*time.Second))
		}
		b.insertSchedule(t, ws.ID, "future", now.Add(time.Hour))
		replicas := []store.Store{b.store, b.reopen(store.Options{Now: b.clock.Now})}
		var (
			mu      sync.Mutex
			claimed = map[string]int{}
			wg      sync.WaitGroup
		)
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := replicas[i%2].InTx(context.Background(), func(tx store.Tx) error {
					got, err := tx.ClaimDueSchedules(b.ctx, now, 8)
					if err != nil {
						return err
					}
					for _, s := range got {
						s.NextRunAt = now.Add(time.Hour) // what the engine does: move it past now
						if err := tx.UpdateSchedule(b.ctx, s); err != nil {
							return err
						}
						mu.Lock()
						claimed[s.ID]++
						mu.Unlock()
					}
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		require.Len(t, claimed, 20, "every due schedule claimed, the future one not")
		for id, n := range claimed {
			require.Equal(t, 1, n, "schedule %s claimed twice", id)
		}
	})

	t.Run("RunsOnePerSlotHistoryLeasesAndPrune", func(t *testing.T) {
		t.Parallel()
		b := setup(t, open)
		ws := b.insertWorkspace(t, nil)
		now := b.clock.Now().Truncate(time.Millisecond).UTC()
		sc := b.insertSchedule(t, ws.ID, "audit", now)
		slot := now.Truncate(time.Minute)
		insert := func(r store.ScheduleRun) bool {
			var ok bool
			require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error {
				var err error
				ok, err = tx.InsertRun(b.ctx, r)
				return err
			}))
			return ok
		}
		run := store.ScheduleRun{ID: newID(), ScheduleID: sc.ID, WorkspaceID: ws.ID, SlotTime: slot, ScheduledTime: slot,
			Trigger: store.TriggerSchedule, Status: store.RunPending, ClaimedBy: "r1", LeaseExpiresAt: now.Add(30 * time.Second), CreatedAt: now}
		require.True(t, insert(run))
		again := run
		again.ID, again.Trigger = newID(), store.TriggerCatchup
		require.False(t, insert(again), "one scheduled or caught-up run per slot")
		manual := run
		manual.ID, manual.Trigger = newID(), store.TriggerManual
		require.True(t, insert(manual), "manual runs are not slot-unique")

		got, err := b.store.GetRun(b.ctx, run.ID)
		require.NoError(t, err)
		require.Equal(t, run, got)
		require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error {
			counts, err := tx.ActiveRunCounts(b.ctx, []string{sc.ID, newID()})
			require.Equal(t, map[string]int{sc.ID: 2}, counts)
			return err
		}))

		// Renewal moves r1's lease; an unrenewed one expires.
		n, err := b.store.RenewRunLeases(b.ctx, "r1", []string{run.ID, manual.ID, again.ID}, now.Add(time.Minute))
		require.NoError(t, err)
		require.EqualValues(t, 2, n, "only r1's runs among the ids (again was never inserted)")
		n, err = b.store.RenewRunLeases(b.ctx, "r2", []string{run.ID}, now.Add(2*time.Minute))
		require.NoError(t, err)
		require.EqualValues(t, 0, n, "another holder renews nothing of r1's")
		exp, err := b.store.ExpiredRuns(b.ctx, now.Add(time.Minute), 10)
		require.NoError(t, err)
		require.Len(t, exp, 2)
		exp, err = b.store.ExpiredRuns(b.ctx, now.Add(59*time.Second), 10)
		require.NoError(t, err)
		require.Empty(t, exp)

		// Finish the first run; active runs are the rest.
		require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error {
			r, err := tx.LockRun(b.ctx, run.ID)
			require.NoError(t, err)
			r.Status, r.FinishedAt, r.DurationMS, r.ResponsePreview, r.EmptyReply = store.RunSucceeded, now.Add(time.Second), 1000, "ok", true
			r.Attempt, r.MessageID, r.TaskID, r.WaitMS = 1, "run-x-a1", "t1", 5
			if err := tx.UpdateRun(b.ctx, r); err != nil {
				return err
			}
			act, err := tx.ActiveRuns(b.ctx, sc.ID)
			require.Len(t, act, 1)
			require.Equal(t, manual.ID, act[0].ID)
			return err
		}))
		done, err := b.store.GetRun(b.ctx, run.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunSucceeded, done.Status)
		require.True(t, done.EmptyReply)
		require.Equal(t, "t1", done.TaskID)

		// A missed range row, then history newest first with paging.
		miss := store.ScheduleRun{ID: newID(), ScheduleID: sc.ID, WorkspaceID: ws.ID, SlotTime: slot.Add(time.Minute), ScheduledTime: slot.Add(time.Minute),
			Trigger: store.TriggerSchedule, Status: store.RunMissed, MissedUntil: slot.Add(3 * time.Minute), MissedCount: 3, Reason: "down", CreatedAt: now}
		require.True(t, insert(miss))
		hist, err := b.store.ListRuns(b.ctx, store.RunFilter{ScheduleID: sc.ID, Limit: 2})
		require.NoError(t, err)
		require.Len(t, hist, 2)
		require.Equal(t, miss.ID, hist[0].ID)
		require.Equal(t, 3, hist[0].MissedCount)
		require.Equal(t, slot.Add(3*time.Minute), hist[0].MissedUntil)
		rest, err := b.store.ListRuns(b.ctx, store.RunFilter{ScheduleID: sc.ID, BeforeID: hist[1].ID})
		require.NoError(t, err)
		require.Len(t, rest, 1)

		// Prune keeps the newest finished rows and never a run in flight.
		require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error {
			n, err := tx.PruneRuns(b.ctx, sc.ID, 1)
			require.EqualValues(t, 1, n)
			return err
		}))
		hist, err = b.store.ListRuns(b.ctx, store.RunFilter{ScheduleID: sc.ID})
		require.NoError(t, err)
		require.Len(t, hist, 2, "the newest finished row and the pending manual run")
	})
}

package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentplane/agentplane/internal/gateway"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/supervise"
	"github.com/google/uuid"
)

// Terminal says whether a run status is final.
func Terminal(status string) bool {
	switch status {
	case store.RunPending, store.RunRunning:
		return false
	}
	return true
}

// messageID is the A2A messageId of one attempt (SPEC §6.3).
func messageID(runID string, attempt int) string { return fmt.Sprintf("run-%s-a%d", runID, attempt) }

// execute runs one job on a worker: it marks the run running, sends the
// prompt (retrying only what certainly did not reach the agent), and
// records the outcome.
func (e *Engine) execute(ctx context.Context, j *job) {
	timeout := time.Duration(j.spec.Timeout)
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	e.mu.Lock()
	e.running[j.run.ID] = cancel
	delete(e.waitingIDs, j.run.ID)
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.running, j.run.ID)
		e.mu.Unlock()
		_ = e.o.Gateway.Release(context.WithoutCancel(ctx), j.lease)
	}()

	wait := e.o.Clock.Since(j.waitFrom)
	started := false
	var skipped *store.ScheduleRun
	err := e.commit.do(j.run.ScheduleID, func(ctx context.Context, tx store.Tx) error {
		started, skipped = false, nil
		r, err := tx.LockRun(ctx, j.run.ID)
		if err != nil {
			return err
		}
		if r.Status != store.RunPending || r.ClaimedBy != e.o.Holder {
			return nil // cancelled meanwhile, or taken over by another replica
		}
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		// The schedule may have been deleted or paused while the run waited
		// for capacity: nothing fires after a delete, nothing during a pause
		// (a manual run was asked for explicitly and still runs when paused).
		sc, err := tx.LockSchedule(ctx, r.ScheduleID)
		if err != nil {
			return err
		}
		if reason := stillWanted(sc, r); reason != "" {
			r.Status, r.Reason, r.FinishedAt, r.LeaseExpiresAt = store.RunSkipped, reason, now, time.Time{}
			r.WaitMS = wait.Milliseconds()
			skipped = &r
			return e.record(ctx, tx, r, now)
		}
		r.Status, r.Attempt, r.MessageID, r.WaitMS = store.RunRunning, 1, messageID(r.ID, 1), wait.Milliseconds()
		r.ClaimedBy, r.LeaseExpiresAt = e.o.Holder, now.Add(RunLeaseTTL)
		if err := tx.UpdateRun(ctx, r); err != nil {
			return err
		}
		j.run, started = r, true
		return e.event(ctx, tx, "CRON_STARTED", r, map[string]any{"trigger": r.Trigger, "attempt": 1})
	})
	if err != nil {
		e.o.Log.Warn("start run", "run_id", j.run.ID, "schedule_id", j.run.ScheduleID, "err", err)
		e.handBack(j)
		return
	}
	if skipped != nil {
		e.observe(*skipped)
	}
	if !started {
		return
	}

	deadline := e.o.Clock.Now().Add(timeout)
	attempt := 1
	var out gateway.Outcome
	for {
		out = e.o.Gateway.Send(runCtx, j.run.WorkspaceID, gateway.Message{
			Text:      j.spec.Prompt,
			MessageID: messageID(j.run.ID, attempt),
			Metadata:  map[string]any{"schedule_id": j.run.ScheduleID, "run_id": j.run.ID, "slot_time": j.run.SlotTime.Format(time.RFC3339)},
		}, gateway.SendOptions{Caller: "scheduler", Purpose: store.LeaseCron, Ref: j.run.ID, Lease: &j.lease, KeepLease: true,
			Timeout: max(deadline.Sub(e.o.Clock.Now()), time.Millisecond)})
		retryable := out.Kind == gateway.KindNotSent || out.Kind == gateway.KindAgentBusy
		if !retryable || attempt >= j.spec.MaxAttempts {
			break
		}
		backoff := time.Second << (attempt - 1)
		if out.Kind == gateway.KindAgentBusy && out.RetryAfter > 0 {
			backoff = out.RetryAfter
		}
		if e.o.Clock.Now().Add(backoff).After(deadline) {
			break
		}
		t := e.o.Clock.NewTimer(backoff)
		select {
		case <-t.C():
		case <-runCtx.Done():
			t.Stop()
		}
		if runCtx.Err() != nil {
			out = gateway.Outcome{Kind: gateway.KindTimeout, Detail: "the run's timeout passed while waiting to retry: " + out.Detail}
			if errors.Is(runCtx.Err(), context.Canceled) {
				out.Kind = gateway.KindCancelled
			}
			break
		}
		attempt++
	}
	if out.Kind == gateway.KindCancelled && out.TaskID != "" {
		// An operator cancelled the run while the agent worked on a task:
		// tell the agent too (SPEC §6.1), best effort.
		c := e.o.Gateway.CancelTask(context.WithoutCancel(ctx), j.run.WorkspaceID, out.Version, out.TaskID, "scheduler")
		e.o.Log.Info("cancelled the agent's task", "run_id", j.run.ID, "task_id", out.TaskID, "answer", string(c.Kind))
	}
	e.finish(j, out, attempt)
}

// outcome maps a gateway outcome to a run status (SPEC §6.4).
func outcome(out gateway.Outcome) (status, reason, detail string, empty bool) {
	switch out.Kind {
	case gateway.KindMessage:
		return store.RunSucceeded, "", "", out.Text == ""
	case gateway.KindTask:
		switch out.State {
		case gateway.StateCompleted:
			return store.RunSucceeded, "", "", out.Text == ""
		case gateway.StateFailed, gateway.StateRejected:
			d := out.Text
			if d == "" {
				d = "the agent's task ended " + out.State
			}
			return store.RunFailed, "", d, false
		case gateway.StateCanceled:
			return store.RunCancelled, "", "the agent cancelled the task", false
		case gateway.StateInputRequired, gateway.StateAuthRequired:
			return store.RunFailed, ReasonNeedsInput, "the agent's task ended " + out.State, false
		}
		return store.RunFailed, "", "the agent's task ended in state " + out.State, false
	case gateway.KindTimeout:
		return store.RunTimedOut, "", out.Detail, false
	case gateway.KindCancelled:
		return store.RunCancelled, "", "cancelled", false
	case gateway.KindBusy:
		return store.RunSkipped, ReasonBusy, "", false
	case gateway.KindUnavailable, gateway.KindNotFound, gateway.KindForbidden:
		return store.RunSkipped, out.Detail, "", false
	}
	return store.RunFailed, "", out.Detail, false // rpc_error, sent_failed, not_sent and agent_busy after the last attempt
}

// finish records a run's outcome: the run row, the schedule's counters, a
// cron_run activity row and exactly one terminal event, in one transaction.
func (e *Engine) finish(j *job, out gateway.Outcome, attempt int) {
	status, reason, detail, empty := outcome(out)
	var done *store.ScheduleRun
	err := e.commit.do(j.run.ScheduleID, func(ctx context.Context, tx store.Tx) error {
		done = nil
		r, err := tx.LockRun(ctx, j.run.ID)
		if err != nil {
			return err
		}
		if Terminal(r.Status) {
			return nil // cancelled by an operator, or abandoned by a sweep: already recorded
		}
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		r.Status, r.Reason, r.ErrorDetail, r.EmptyReply = status, reason, capString(detail, responseMax), empty
		r.Attempt, r.MessageID, r.TaskID = attempt, messageID(r.ID, attempt), out.TaskID
		r.FinishedAt, r.LeaseExpiresAt = now, time.Time{}
		r.DurationMS = now.Sub(r.StartedAt).Milliseconds()
		r.ResponsePreview, r.ResponseBody = capString(out.Text, previewMax), capString(out.Text, responseMax)
		done = &r
		return e.record(ctx, tx, r, now)
	})
	if err != nil {
		e.o.Log.Error("record run outcome", "run_id", j.run.ID, "schedule_id", j.run.ScheduleID, "status", status, "err", err)
	} else if done != nil {
		e.observe(*done)
	}
}

// finishSkipped records a pending run that could not start.
func (e *Engine) finishSkipped(j *job, reason string) {
	var done *store.ScheduleRun
	err := e.commit.do(j.run.ScheduleID, func(ctx context.Context, tx store.Tx) error {
		done = nil
		r, err := tx.LockRun(ctx, j.run.ID)
		if err != nil {
			return err
		}
		if r.Status != store.RunPending || r.ClaimedBy != e.o.Holder {
			return nil // settled, or taken over by another replica
		}
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		r.Status, r.Reason, r.FinishedAt, r.LeaseExpiresAt = store.RunSkipped, reason, now, time.Time{}
		r.WaitMS = e.o.Clock.Since(j.waitFrom).Milliseconds()
		done = &r
		return e.record(ctx, tx, r, now)
	})
	if err != nil {
		e.o.Log.Error("record skipped run", "run_id", j.run.ID, "err", err)
	} else if done != nil {
		e.observe(*done)
	}
}

func capString(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// record writes a finished run, its schedule's bookkeeping, the cron_run
// activity row and its terminal event.
func (e *Engine) record(ctx context.Context, tx store.Tx, r store.ScheduleRun, now time.Time) error {
	if err := tx.UpdateRun(ctx, r); err != nil {
		return err
	}
	sc, err := tx.LockSchedule(ctx, r.ScheduleID)
	if err != nil {
		return err
	}
	st, err := decode[State](sc.State)
	if err != nil {
		return err
	}
	spec, _ := decode[Spec](sc.Spec)
	countRun(&st, r)
	if err := e.saveSchedule(ctx, tx, sc, st, now); err != nil {
		return err
	}
	if err := e.outcomeRecords(ctx, tx, sc.Name, spec.Prompt, r, now); err != nil {
		return err
	}
	_, err = tx.PruneRuns(ctx, r.ScheduleID, e.o.RunHistory)
	return err
}

// outcomeRecords writes the cron_run activity row and the terminal event of
// a finished run or an accounted-for slot.
func (e *Engine) outcomeRecords(ctx context.Context, tx store.Tx, name, prompt string, r store.ScheduleRun, now time.Time) error {
	summary := fmt.Sprintf("%s: %s", name, r.Status)
	if r.Reason != "" {
		summary += " (" + r.Reason + ")"
	}
	if err := tx.InsertActivity(ctx, store.Activity{
		ID: uuid.Must(uuid.NewV7()).String(), WorkspaceID: r.WorkspaceID, ActivityType: "cron_run", Source: "canvas",
		SourceID: "scheduler", TargetID: r.WorkspaceID, Method: "message/send", Summary: store.CleanText(summary),
		RequestBody: store.CleanText(capString(prompt, responseMax)), ResponseBody: store.CleanText(r.ResponseBody),
		Status: r.Status, ErrorDetail: store.CleanText(r.ErrorDetail), DurationMS: r.DurationMS, CreatedAt: now,
	}); err != nil {
		return err
	}
	typ, extra := terminalEvent(r)
	return e.event(ctx, tx, typ, r, extra)
}

// countRun applies a finished run to the schedule's counters. Skipped and
// missed slots are not runs (SPEC §6.4).
func countRun(st *State, r store.ScheduleRun) {
	switch r.Status {
	case store.RunSkipped:
		st.SkippedCount++
		return
	case store.RunMissed:
		st.MissedCount += int64(r.MissedCount)
		return
	}
	st.RunCount++
	st.LastRunAt, st.LastStatus = r.FinishedAt, r.Status
	if !r.StartedAt.IsZero() {
		st.LastLatenessMS = r.StartedAt.Sub(r.SlotTime).Milliseconds()
	}
	if r.Status == store.RunSucceeded {
		st.ConsecutiveFailures, st.LastError = 0, ""
		if r.EmptyReply {
			st.EmptyStreak++
		} else {
			st.EmptyStreak = 0
		}
		return
	}
	st.FailureCount++
	st.ConsecutiveFailures++
	st.LastError = r.ErrorDetail
	if st.LastError == "" {
		st.LastError = r.Status
	}
}

func terminalEvent(r store.ScheduleRun) (string, map[string]any) {
	switch r.Status {
	case store.RunSucceeded:
		return "CRON_EXECUTED", map[string]any{"duration_ms": r.DurationMS, "empty_reply": r.EmptyReply}
	case store.RunSkipped:
		return "CRON_SKIPPED", map[string]any{"reason": r.Reason}
	case store.RunMissed:
		return "CRON_MISSED", map[string]any{"count": r.MissedCount, "reason": r.Reason}
	}
	return "CRON_FAILED", map[string]any{"status": r.Status, "error": capString(r.ErrorDetail, previewMax)}
}

// RunLeases renews this replica's run leases every RunLeaseRenew and sweeps
// runs whose lease expired: a run that never left (attempt 0: handed back,
// or its replica died before sending) is taken over and dispatched here; a
// run that may have reached the agent is recorded abandoned, never resent.
// It also notices runs cancelled through another replica.
func (e *Engine) RunLeases(ctx context.Context, h *supervise.Heart) error {
	t := e.o.Clock.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
		if err := e.leasePass(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		h.Beat()
		t.Reset(RunLeaseRenew)
	}
}

func (e *Engine) leasePass(ctx context.Context) error {
	now, err := e.o.Store.Now(ctx)
	if err != nil {
		return err
	}
	e.mu.Lock()
	mine := make([]string, 0, len(e.running)+len(e.waitingIDs))
	for id := range e.running {
		mine = append(mine, id)
	}
	for id := range e.waitingIDs {
		mine = append(mine, id)
	}
	e.mu.Unlock()
	// Only the runs this replica is working on: a run whose outcome could
	// not be written must lapse so that a sweep settles it.
	if len(mine) > 0 { // an idle replica writes nothing
		if _, err := e.o.Store.RenewRunLeases(ctx, e.o.Holder, mine, now.Add(RunLeaseTTL)); err != nil {
			return fmt.Errorf("renew run leases: %w", err)
		}
	}
	expired, err := e.o.Store.ExpiredRuns(ctx, now, ClaimBatch)
	if err != nil {
		return fmt.Errorf("expired runs: %w", err)
	}
	for _, x := range expired {
		// One run that cannot be settled must not stop the others, nor
		// (through the supervisor's backoff) the next renewal.
		if err := e.sweep(ctx, x.ID); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			e.o.Log.Warn("sweep run", "run_id", x.ID, "err", err)
		}
	}
	// Runs cancelled through another replica.
	e.mu.Lock()
	local := make([]string, 0, len(e.running))
	for id := range e.running {
		local = append(local, id)
	}
	e.mu.Unlock()
	for _, id := range local {
		if r, err := e.o.Store.GetRun(ctx, id); err == nil && r.Status == store.RunCancelled {
			e.Cancel(id)
		}
	}
	return nil
}

// sweep takes over or abandons one expired run.
func (e *Engine) sweep(ctx context.Context, runID string) error {
	var (
		j         *job
		abandoned *store.ScheduleRun
	)
	err := e.o.Store.InTx(ctx, func(tx store.Tx) error {
		j, abandoned = nil, nil
		r, err := tx.LockRun(ctx, runID)
		if err != nil {
			return err
		}
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		if Terminal(r.Status) || r.LeaseExpiresAt.After(now) {
			return nil // someone else got there
		}
		if r.Attempt == 0 {
			sc, err := tx.LockSchedule(ctx, r.ScheduleID)
			if err != nil {
				return err
			}
			spec, err := decode[Spec](sc.Spec)
			if err != nil {
				return err
			}
			r.ClaimedBy, r.LeaseExpiresAt = e.o.Holder, now.Add(RunLeaseTTL)
			if err := tx.UpdateRun(ctx, r); err != nil {
				return err
			}
			j = &job{run: r, sched: sc, spec: spec}
			return nil
		}
		r.Status, r.FinishedAt, r.LeaseExpiresAt = store.RunAbandoned, now, time.Time{}
		r.ErrorDetail = "the replica running it stopped (" + r.ClaimedBy + "); not resent because the agent may have it"
		if !r.StartedAt.IsZero() {
			r.DurationMS = now.Sub(r.StartedAt).Milliseconds()
		}
		abandoned = &r
		return e.record(ctx, tx, r, now)
	})
	if err == nil && abandoned != nil {
		e.observe(*abandoned)
	}
	if err == nil && j != nil {
		e.dispatch(ctx, j)
	}
	return err
}

// stillWanted says why a claimed run must not start any more ("" if it may).
func stillWanted(sc store.Schedule, r store.ScheduleRun) string {
	switch {
	case !sc.DeletedAt.IsZero():
		return ReasonScheduleDeleted
	case !sc.Enabled && r.Trigger != store.TriggerManual:
		return ReasonSchedulePaused
	}
	return ""
}

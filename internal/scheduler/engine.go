package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/agentplane/agentplane/internal/clock"
	"github.com/agentplane/agentplane/internal/events"
	"github.com/agentplane/agentplane/internal/gateway"
	"github.com/agentplane/agentplane/internal/metrics"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/supervise"
	"github.com/google/uuid"
)

// Engine timing (SPEC §6.4).
const (
	// BeatInterval is the longest the claim loop sleeps: it looks at least
	// this often even when no wake-up arrives.
	BeatInterval = time.Second
	// RunLeaseTTL and RunLeaseRenew: a run's lease lasts 30 s and is renewed
	// every 10 s; a run whose lease expired belonged to a dead replica.
	RunLeaseTTL   = 30 * time.Second
	RunLeaseRenew = 10 * time.Second
	// ClaimBatch bounds the schedules one claim transaction locks; smaller
	// batches start their runs sooner, larger ones cost fewer commits.
	ClaimBatch = 128
	// DefaultWorkers bounds the runs talking to agents at once per replica.
	// Calls are I/O-bound and each workspace's own max_concurrent_tasks
	// already bounds its share, so the global bound is only a safety net:
	// set low, hung agents would fill it and delay everyone else.
	DefaultWorkers = 10_000
	// DefaultRunHistory is the newest history rows kept per schedule.
	DefaultRunHistory = 1000
	previewMax        = 512
	responseMax       = 64 << 10
)

// Skip reasons.
const (
	ReasonOverlap           = "previous run still running (overlap_policy skip)"
	ReasonBusy              = "workspace busy"
	ReasonWorkspacePaused   = "workspace paused"
	ReasonWorkspaceOffline  = "workspace offline"
	ReasonWorkspaceNoAgent  = "workspace has no agent yet"
	ReasonWorkspaceNoURL    = "workspace has no agent URL"
	ReasonWorkspaceRemoved  = "workspace removed"
	ReasonNeedsInput        = "needs_input"
	ReasonScheduleDeleted   = "schedule deleted before the run could start"
	ReasonSchedulePaused    = "schedule paused before the run could start"
	ReasonHandedBackOnClose = "handed back at shutdown"
)

// Options configure an Engine.
type Options struct {
	Store      store.Store
	Clock      clock.Clock
	Log        *slog.Logger
	Gateway    *gateway.Gateway
	Holder     string // this replica's id
	Workers    int
	RunHistory int
	// Metrics receives lateness, outcomes, skips, misses and backlog (may
	// be nil).
	Metrics *metrics.Metrics
}

// Engine claims due slots, dispatches runs through the gateway and records
// their outcomes (SPEC §6.4). Its loops run under the supervisor.
type Engine struct {
	o      Options
	wake   chan struct{}
	slots  chan struct{} // one per run talking to an agent (the worker bound)
	commit *committer

	mu      sync.Mutex
	running map[string]context.CancelFunc // run id → cancel, on this replica
	waiting sync.WaitGroup                // dispatchers waiting for capacity
	stopped bool
	// waitingIDs are the runs of this replica waiting for capacity; with
	// running, they are the runs whose leases this replica renews.
	waitingIDs map[string]bool
	// dctx is the engine's lifetime: dispatch works under it; Drain ends it.
	dctx    context.Context
	dcancel context.CancelFunc
	// last claim pass, for /admin/scheduler
	lastClaimAt  time.Time
	lastClaimDur time.Duration
	lastClaimed  int
}

// job is one run on its way to the agent.
type job struct {
	run      store.ScheduleRun
	sched    store.Schedule
	spec     Spec
	lease    store.Lease
	waitFrom time.Time
}

// NewEngine returns an engine; start its loops with RunClaims, RunLeases and
// RunWorkers.
func NewEngine(o Options) *Engine {
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.RunHistory <= 0 {
		o.RunHistory = DefaultRunHistory
	}
	if o.Holder == "" {
		o.Holder = uuid.NewString()
	}
	e := &Engine{o: o, wake: make(chan struct{}, 1), slots: make(chan struct{}, o.Workers), running: map[string]context.CancelFunc{},
		waitingIDs: map[string]bool{}, commit: newCommitter(o.Store)}
	e.dctx, e.dcancel = context.WithCancel(context.Background())
	return e
}

// Wake makes the claim loop look at once (a schedule was created, changed
// or resumed, here or — through the event relay — on another replica).
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// RunClaims is the claim loop: it claims every due schedule in batches,
// records missed and skipped slots, starts the runs, then sleeps until the
// next due time, a wake-up or BeatInterval, whichever comes first. It
// beats after each completed pass and never waits for a run.
func (e *Engine) RunClaims(ctx context.Context, h *supervise.Heart) error {
	t := e.o.Clock.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		case <-e.wake:
		}
		// A read first: an idle scheduler opens no write transaction.
		for due, err := e.anythingDue(ctx); due || err != nil; due, err = e.anythingDue(ctx) {
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("claim: %w", err)
			}
			n, err := e.claimOnce(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("claim: %w", err)
			}
			if n < ClaimBatch {
				break
			}
		}
		h.Beat()
		if e.o.Metrics != nil {
			if now, err := e.o.Store.Now(ctx); err == nil {
				if st, err := e.o.Store.SchedulerStats(ctx, now); err == nil {
					e.o.Metrics.SchedulerBacklog.Set(float64(st.Due))
				}
			}
		}
		sleep := BeatInterval
		if next, ok, err := e.o.Store.NextDue(ctx); err == nil && ok {
			if now, err := e.o.Store.Now(ctx); err == nil {
				sleep = min(max(next.Sub(now), 0), BeatInterval)
			}
		}
		t.Reset(sleep)
	}
}

// anythingDue tells whether any schedule is due by store time.
func (e *Engine) anythingDue(ctx context.Context) (bool, error) {
	next, ok, err := e.o.Store.NextDue(ctx)
	if err != nil || !ok {
		return false, err
	}
	now, err := e.o.Store.Now(ctx)
	if err != nil {
		return false, err
	}
	return !next.After(now), nil
}

// claimOnce claims one batch of due schedules in one transaction.
func (e *Engine) claimOnce(ctx context.Context) (int, error) {
	var (
		jobs     []*job
		n        int
		observed []store.ScheduleRun
	)
	start := time.Now()
	err := e.o.Store.InTx(ctx, func(tx store.Tx) error {
		jobs, observed = jobs[:0], observed[:0]
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		due, err := tx.ClaimDueSchedules(ctx, now, ClaimBatch)
		if err != nil {
			return err
		}
		n = len(due)
		// One query for the runs in flight of the whole batch, and each
		// workspace read once: a claim's cost is per batch, not per row.
		ids := make([]string, len(due))
		for i, sc := range due {
			ids[i] = sc.ID
		}
		cc := &claimCache{workspaces: map[string]store.Workspace{}, blocked: map[string]string{}}
		if cc.active, err = tx.ActiveRunCounts(ctx, ids); err != nil {
			return err
		}
		for _, sc := range due {
			js, err := e.process(ctx, tx, sc, now, cc, &observed)
			if err != nil {
				return fmt.Errorf("schedule %s: %w", sc.ID, err)
			}
			jobs = append(jobs, js...)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, r := range observed {
		e.observe(r)
	}
	for _, j := range jobs {
		e.observe(j.run)
		e.dispatch(ctx, j)
	}
	e.mu.Lock()
	e.lastClaimAt, e.lastClaimDur, e.lastClaimed = e.o.Clock.Now(), time.Since(start), n
	e.mu.Unlock()
	return n, nil
}

// observe reports a recorded run or slot to the metrics.
func (e *Engine) observe(r store.ScheduleRun) {
	m := e.o.Metrics
	if m == nil {
		return
	}
	switch r.Status {
	case store.RunPending:
		m.SchedulerLateness.Observe(r.StartedAt.Sub(r.SlotTime).Seconds())
		return
	case store.RunMissed:
		m.SchedulerMissed.Add(float64(r.MissedCount))
	case store.RunSkipped:
		m.SchedulerSkips.WithLabelValues(skipLabel(r.Reason)).Inc()
	}
	m.SchedulerRuns.WithLabelValues(r.Status).Inc()
}

// skipLabel keeps the metric's label set small.
func skipLabel(reason string) string {
	switch reason {
	case ReasonOverlap:
		return "overlap"
	case ReasonBusy:
		return "busy"
	case ReasonWorkspacePaused:
		return "workspace_paused"
	case ReasonWorkspaceOffline:
		return "workspace_offline"
	case ReasonWorkspaceNoAgent, ReasonWorkspaceNoURL:
		return "workspace_no_agent"
	case ReasonWorkspaceRemoved:
		return "workspace_removed"
	}
	return "other"
}

// Status is this replica's scheduler state for /admin/scheduler.
type Status struct {
	Holder          string
	LastClaimAt     time.Time
	LastClaimMS     int64
	LastClaimed     int
	RunningHere     int
	WaitingCapacity int
}

// Status reports this replica's scheduler state.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Status{Holder: e.o.Holder, LastClaimAt: e.lastClaimAt, LastClaimMS: e.lastClaimDur.Milliseconds(),
		LastClaimed: e.lastClaimed, RunningHere: len(e.running), WaitingCapacity: len(e.waitingIDs)}
}

func decode[T any](raw json.RawMessage) (T, error) {
	var v T
	if len(raw) == 0 {
		return v, nil
	}
	err := json.Unmarshal(raw, &v)
	return v, err
}

// process plans one claimed schedule and writes what the plan says, in the
// claim transaction.
// claimCache holds what one claim transaction read once for many schedules.
type claimCache struct {
	workspaces map[string]store.Workspace
	blocked    map[string]string // workspace → reason it cannot take a run ("" if it can)
	active     map[string]int    // schedule → runs in flight
}

func (e *Engine) process(ctx context.Context, tx store.Tx, sc store.Schedule, now time.Time, cc *claimCache, observed *[]store.ScheduleRun) ([]*job, error) {
	spec, err := decode[Spec](sc.Spec)
	if err != nil {
		return nil, err
	}
	st, err := decode[State](sc.State)
	if err != nil {
		return nil, err
	}
	cs, err := spec.Parse()
	if err != nil { // cannot happen for a schedule the API accepted; stop it loudly
		e.o.Log.Error("schedule no longer parses; disabling it", "schedule_id", sc.ID, "err", err)
		st.LastError = err.Error()
		sc.Enabled, sc.NextRunAt = false, time.Time{}
		return nil, e.saveSchedule(ctx, tx, sc, st, now)
	}
	ws, cached := cc.workspaces[sc.WorkspaceID]
	if !cached {
		if ws, err = tx.GetWorkspace(ctx, sc.WorkspaceID); err != nil {
			return nil, err
		}
		cc.workspaces[ws.ID] = ws
	}
	if ws.Status == store.StatusRemoved {
		st.PauseNote = "stopped: " + ReasonWorkspaceRemoved
		sc.Enabled, sc.NextRunAt = false, time.Time{}
		return nil, e.saveSchedule(ctx, tx, sc, st, now)
	}
	last := st.LastSlot
	if last.IsZero() {
		last = sc.CreatedAt
	}
	plan := PlanDue(cs, spec, last, now)
	for _, m := range plan.Missed {
		r := store.ScheduleRun{
			ID: newRunID(), ScheduleID: sc.ID, WorkspaceID: sc.WorkspaceID, SlotTime: m.First, ScheduledTime: m.First,
			Trigger: store.TriggerSchedule, Status: store.RunMissed, Reason: m.Reason, MissedUntil: m.Last, MissedCount: m.Count,
			FinishedAt: now, CreatedAt: now,
		}
		if ok, err := tx.InsertRun(ctx, r); err != nil || !ok {
			if err != nil {
				return nil, err
			}
			continue
		}
		st.MissedCount += int64(m.Count)
		if err := e.outcomeRecords(ctx, tx, sc.Name, spec.Prompt, r, now); err != nil {
			return nil, err
		}
		*observed = append(*observed, r)
	}
	var jobs []*job
	for _, f := range plan.Fires {
		r := store.ScheduleRun{
			ID: newRunID(), ScheduleID: sc.ID, WorkspaceID: sc.WorkspaceID, SlotTime: f.Slot, ScheduledTime: f.Slot,
			Trigger: f.Trigger, CreatedAt: now,
		}
		reason, known := cc.blocked[ws.ID]
		if !known {
			if reason, err = e.blocked(ctx, tx, ws, now); err != nil {
				return nil, err
			}
			cc.blocked[ws.ID] = reason
		}
		if reason == "" && cc.active[sc.ID] > 0 {
			reason = ReasonOverlap
		}
		if reason != "" {
			r.Status, r.Reason, r.FinishedAt = store.RunSkipped, reason, now
			if ok, err := tx.InsertRun(ctx, r); err != nil || !ok {
				if err != nil {
					return nil, err
				}
				continue
			}
			st.SkippedCount++
			if err := e.outcomeRecords(ctx, tx, sc.Name, spec.Prompt, r, now); err != nil {
				return nil, err
			}
			*observed = append(*observed, r)
			continue
		}
		r.Status, r.ClaimedBy, r.LeaseExpiresAt, r.StartedAt = store.RunPending, e.o.Holder, now.Add(RunLeaseTTL), now
		ok, err := tx.InsertRun(ctx, r)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue // the slot has its row already
		}
		cc.active[sc.ID]++
		jobs = append(jobs, &job{run: r, sched: sc, spec: spec})
	}
	st.LastSlot = plan.LastSlot
	sc.NextRunAt = plan.Next
	return jobs, e.saveSchedule(ctx, tx, sc, st, now)
}

// blocked says why a workspace cannot take a run now ("" when it can).
// A workspace holding a live lease is not offline (SPEC §7.3).
func (e *Engine) blocked(ctx context.Context, tx store.Tx, ws store.Workspace, now time.Time) (string, error) {
	switch ws.Status {
	case store.StatusPaused:
		return ReasonWorkspacePaused, nil
	case store.StatusOffline, store.StatusAwaitingAgent:
		n, err := tx.CountLeases(ctx, ws.ID, now)
		if err != nil {
			return "", err
		}
		if n == 0 {
			if ws.Status == store.StatusAwaitingAgent {
				return ReasonWorkspaceNoAgent, nil
			}
			return ReasonWorkspaceOffline, nil
		}
	}
	if ws.URL == "" {
		return ReasonWorkspaceNoURL, nil
	}
	return "", nil
}

func (e *Engine) saveSchedule(ctx context.Context, tx store.Tx, sc store.Schedule, st State, now time.Time) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	sc.State = raw
	return tx.UpdateSchedule(ctx, sc)
}

func newRunID() string { return uuid.Must(uuid.NewV7()).String() }

// event appends a CRON_* event about run r.
func (e *Engine) event(ctx context.Context, tx store.Tx, typ string, r store.ScheduleRun, extra map[string]any) error {
	p := map[string]any{"schedule_id": r.ScheduleID, "run_id": r.ID, "slot_time": r.SlotTime}
	for k, v := range extra {
		p[k] = v
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, _, err = tx.AppendEvent(ctx, store.EventInput{Type: typ, WorkspaceID: r.WorkspaceID, Audience: store.AudienceWorkspace, Actor: "system:scheduler", Payload: raw})
	return err
}

// dispatch waits for a capacity slot (up to busy_wait) without holding a
// worker, then runs the job. It works under the engine's own context, not
// the caller's: only Drain (shutdown) makes waiting runs hand back.
func (e *Engine) dispatch(_ context.Context, j *job) {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		e.handBack(j)
		return
	}
	e.waiting.Add(1)
	e.waitingIDs[j.run.ID] = true
	e.mu.Unlock()
	j.waitFrom = e.o.Clock.Now()
	ctx := e.dctx
	go func() {
		defer e.waiting.Done()
		l, err := e.o.Gateway.Acquire(ctx, j.run.WorkspaceID, store.LeaseCron, j.run.ID, j.spec.BusyWaitOrDefault())
		if err != nil {
			e.doneWaiting(j.run.ID)
			switch {
			case errors.Is(err, gateway.ErrBusy):
				e.finishSkipped(j, ReasonBusy)
			case ctx.Err() != nil:
				e.handBack(j)
			case errors.Is(err, store.ErrNotFound):
				e.finishSkipped(j, ReasonWorkspaceRemoved)
			default:
				e.o.Log.Warn("capacity for run", "run_id", j.run.ID, "err", err)
				e.handBack(j)
			}
			return
		}
		j.lease = l
		select {
		case e.slots <- struct{}{}:
		case <-ctx.Done():
			e.doneWaiting(j.run.ID)
			_ = e.o.Gateway.Release(context.WithoutCancel(ctx), l)
			e.handBack(j)
			return
		}
		defer func() { <-e.slots }()
		// Shutdown does not cancel a run that is talking to its agent: it
		// may finish within --shutdown-grace.
		e.execute(context.WithoutCancel(ctx), j)
	}()
}

// doneWaiting forgets a run that stopped waiting for capacity.
func (e *Engine) doneWaiting(id string) {
	e.mu.Lock()
	delete(e.waitingIDs, id)
	e.mu.Unlock()
}

// Drain stops dispatching (runs still waiting for capacity are handed back
// to any replica) and waits until the runs talking to their agents finished
// or ctx ends. The app calls it at shutdown before stopping the loops that
// renew this replica's leases, so a finishing run keeps its leases.
func (e *Engine) Drain(ctx context.Context) {
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	e.dcancel()
	done := make(chan struct{})
	go func() { e.waiting.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// handBack returns a run that was never sent: its lease is made to expire
// now, and any replica's lease sweep takes it over (attempt 0 means it never
// left).
func (e *Engine) handBack(j *job) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := e.o.Store.InTx(ctx, func(tx store.Tx) error {
		r, err := tx.LockRun(ctx, j.run.ID)
		if err != nil {
			return err
		}
		if r.Status != store.RunPending || r.ClaimedBy != e.o.Holder {
			return nil
		}
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		r.ClaimedBy, r.LeaseExpiresAt = "", now
		return tx.UpdateRun(ctx, r)
	})
	if err != nil {
		e.o.Log.Warn("hand back run", "run_id", j.run.ID, "err", err)
	}
}

// RunWorkers supervises the runs in flight: it beats while they run and,
// once ctx ends, stops new dispatches, lets dispatchers still waiting for
// capacity hand their runs back, and waits for runs talking to their
// agents to finish (the app bounds that with --shutdown-grace).
func (e *Engine) RunWorkers(ctx context.Context, h *supervise.Heart) error {
	wait := e.startWorkers(ctx)
	beat := e.o.Clock.NewTimer(BeatInterval)
	defer beat.Stop()
	for {
		h.Beat()
		select {
		case <-ctx.Done():
			wait()
			return nil
		case <-beat.C():
			beat.Reset(BeatInterval)
		}
	}
}

// startWorkers returns the wait that RunWorkers calls at shutdown (tests
// call it directly, without the liveness beat).
func (e *Engine) startWorkers(ctx context.Context) (wait func()) {
	return func() { e.Drain(context.Background()) }
}

// Cancel cancels a run running on this replica; it reports whether it did.
func (e *Engine) Cancel(runID string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.running[runID]; ok {
		c()
		return true
	}
	return false
}

// Changes is the part of the event hub FollowChanges needs.
type Changes interface {
	Subscribe(buffer int) (*events.Subscription, int64, error)
}

// FollowChanges wakes the claim loop whenever a SCHEDULE_* event is
// relayed (from this replica or another), so a new or changed schedule is
// picked up at once everywhere. A dropped subscription (overflow) is
// renewed; the claim loop's own beat covers anything missed meanwhile.
func (e *Engine) FollowChanges(ctx context.Context, h *supervise.Heart, hub Changes) error {
	sub, _, err := hub.Subscribe(1024)
	if err != nil {
		return err
	}
	defer sub.Close()
	beat := e.o.Clock.NewTimer(BeatInterval)
	defer beat.Stop()
	for {
		h.Beat()
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-sub.C():
			if !ok {
				return fmt.Errorf("change feed ended: %v", sub.Err())
			}
			if strings.HasPrefix(ev.Type, "SCHEDULE_") {
				e.Wake()
			}
		case <-beat.C():
			beat.Reset(BeatInterval)
		}
	}
}

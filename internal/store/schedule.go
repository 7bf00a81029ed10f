package store

import (
	"encoding/json"
	"time"
)

// Run statuses (SPEC §6.4).
const (
	RunPending   = "pending"
	RunRunning   = "running"
	RunSucceeded = "succeeded"
	RunFailed    = "failed"
	RunTimedOut  = "timed_out"
	RunSkipped   = "skipped"
	RunMissed    = "missed"
	RunAbandoned = "abandoned"
	RunCancelled = "cancelled"
)

// Run triggers.
const (
	TriggerSchedule = "schedule"
	TriggerCatchup  = "catchup"
	TriggerManual   = "manual"
	TriggerBackfill = "backfill"
)

// Schedule is a cron schedule of a workspace. The store keeps the
// scheduler's definition (Spec) and bookkeeping (State) as JSON it does not
// interpret; it indexes only what it must query: the workspace, the name
// (unique per workspace among live schedules), whether it is enabled and
// when it is next due.
type Schedule struct {
	ID          string
	WorkspaceID string
	Name        string
	Spec        json.RawMessage
	State       json.RawMessage
	Enabled     bool
	// NextRunAt is when the claim loop must next look at the schedule (the
	// next slot, or a waiting buffered slot); zero when it never fires again.
	NextRunAt time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
	UpdatedBy string
	// DeletedAt is set by DELETE: nothing fires afterwards, history stays
	// until the workspace's retention.
	DeletedAt time.Time
}

// ScheduleRun is one row of a schedule's history: a run, or a skipped or
// missed slot (range).
type ScheduleRun struct {
	ID            string
	ScheduleID    string
	WorkspaceID   string
	SlotTime      time.Time // nominal instant (the slot's identity)
	ScheduledTime time.Time // slot + jitter
	Trigger       string
	Status        string
	Attempt       int
	StartedAt     time.Time // first dispatch attempt; zero before
	FinishedAt    time.Time
	DurationMS    int64
	// Reason says why a slot was skipped or missed.
	Reason string
	// ErrorDetail says why a run failed.
	ErrorDetail     string
	ResponsePreview string
	ResponseBody    string
	EmptyReply      bool
	// WaitMS is the time spent waiting for workspace capacity.
	WaitMS int64
	// ClaimedBy is the replica running it; LeaseExpiresAt is renewed while
	// it runs, and a run whose lease expired is abandoned.
	ClaimedBy      string
	LeaseExpiresAt time.Time
	// MissedUntil and MissedCount describe a missed range (SlotTime is its
	// first slot).
	MissedUntil time.Time
	MissedCount int
	MessageID   string
	TaskID      string
	CreatedAt   time.Time
}

// RunFilter pages a schedule's history newest first.
type RunFilter struct {
	ScheduleID string
	BeforeID   string
	Limit      int
}

// SchedulerStats is the scheduler's state across replicas.
type SchedulerStats struct {
	// Due counts enabled live schedules whose next_run_at has come.
	Due int
	// OldestDue is the earliest next_run_at among them (zero if none).
	OldestDue time.Time
	// Pending and Running count runs in flight.
	Pending, Running int
}

package api

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/cron"
	"github.com/agentplane/agentplane/internal/fault"
	"github.com/agentplane/agentplane/internal/httpapi"
	"github.com/agentplane/agentplane/internal/scheduler"
	"github.com/agentplane/agentplane/internal/store"
)

type scheduleJSON struct {
	ID                  string             `json:"id"`
	WorkspaceID         string             `json:"workspace_id"`
	Name                string             `json:"name"`
	CronExpr            string             `json:"cron_expr"`
	Timezone            string             `json:"timezone"`
	Prompt              string             `json:"prompt"`
	Enabled             bool               `json:"enabled"`
	Paused              bool               `json:"paused"`
	PauseNote           string             `json:"pause_note"`
	DSTGap              string             `json:"dst_gap"`
	DSTFold             string             `json:"dst_fold"`
	OverlapPolicy       string             `json:"overlap_policy"`
	CatchupPolicy       string             `json:"catchup_policy"`
	CatchupWindow       scheduler.Duration `json:"catchup_window"`
	BusyWait            scheduler.Duration `json:"busy_wait"`
	Timeout             scheduler.Duration `json:"timeout"`
	MaxAttempts         int                `json:"max_attempts"`
	Jitter              scheduler.Duration `json:"jitter"`
	NextRunAt           *time.Time         `json:"next_run_at"`
	LastRunAt           *time.Time         `json:"last_run_at"`
	LastStatus          string             `json:"last_status"`
	LastError           string             `json:"last_error"`
	RunCount            int64              `json:"run_count"`
	SkippedCount        int64              `json:"skipped_count"`
	MissedCount         int64              `json:"missed_count"`
	FailureCount        int64              `json:"failure_count"`
	ConsecutiveFailures int64              `json:"consecutive_failures"`
	CreatedAt           time.Time          `json:"created_at"`
	UpdatedAt           time.Time          `json:"updated_at"`
	UpdatedBy           string             `json:"updated_by"`
	NextRuns            []cron.Run         `json:"next_runs,omitempty"`
	RecentRuns          []runJSON          `json:"recent_runs,omitempty"`
}

func toScheduleJSON(v scheduler.View) scheduleJSON {
	return scheduleJSON{
		ID: v.ID, WorkspaceID: v.WorkspaceID, Name: v.Name, CronExpr: v.Spec.CronExpr, Timezone: v.Spec.Timezone, Prompt: v.Spec.Prompt,
		Enabled: v.Enabled, Paused: !v.Enabled, PauseNote: v.State.PauseNote, DSTGap: v.Spec.DSTGap, DSTFold: v.Spec.DSTFold,
		OverlapPolicy: v.Spec.OverlapPolicy, CatchupPolicy: v.Spec.CatchupPolicy, CatchupWindow: v.Spec.CatchupWindow,
		BusyWait: scheduler.Duration(v.Spec.BusyWaitOrDefault()), Timeout: v.Spec.Timeout, MaxAttempts: v.Spec.MaxAttempts, Jitter: v.Spec.Jitter,
		NextRunAt: timePtr(v.NextRunAt), LastRunAt: timePtr(v.State.LastRunAt), LastStatus: v.State.LastStatus, LastError: v.State.LastError,
		RunCount: v.State.RunCount, SkippedCount: v.State.SkippedCount, MissedCount: v.State.MissedCount, FailureCount: v.State.FailureCount,
		ConsecutiveFailures: v.State.ConsecutiveFailures, CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt, UpdatedBy: v.UpdatedBy,
	}
}

type runJSON struct {
	ID              string     `json:"id"`
	ScheduleID      string     `json:"schedule_id"`
	SlotTime        time.Time  `json:"slot_time"`
	ScheduledTime   time.Time  `json:"scheduled_time"`
	StartedAt       *time.Time `json:"started_at"`
	FinishedAt      *time.Time `json:"finished_at"`
	DurationMS      int64      `json:"duration_ms"`
	Status          string     `json:"status"`
	Trigger         string     `json:"trigger"`
	Attempt         int        `json:"attempt"`
	Reason          string     `json:"reason"`
	ErrorDetail     string     `json:"error_detail"`
	ResponsePreview string     `json:"response_preview"`
	EmptyReply      bool       `json:"empty_reply"`
	WaitMS          int64      `json:"wait_ms"`
	MissedUntil     *time.Time `json:"missed_until,omitempty"`
	MissedCount     int        `json:"missed_count,omitempty"`
	MessageID       string     `json:"message_id,omitempty"`
	TaskID          string     `json:"task_id,omitempty"`
	ResponseBody    *string    `json:"response_body,omitempty"`
}

func toRunJSON(r store.ScheduleRun) runJSON {
	return runJSON{
		ID: r.ID, ScheduleID: r.ScheduleID, SlotTime: r.SlotTime, ScheduledTime: r.ScheduledTime, StartedAt: timePtr(r.StartedAt),
		FinishedAt: timePtr(r.FinishedAt), DurationMS: r.DurationMS, Status: r.Status, Trigger: r.Trigger, Attempt: r.Attempt,
		Reason: r.Reason, ErrorDetail: r.ErrorDetail, ResponsePreview: r.ResponsePreview, EmptyReply: r.EmptyReply, WaitMS: r.WaitMS,
		MissedUntil: timePtr(r.MissedUntil), MissedCount: r.MissedCount, MessageID: r.MessageID, TaskID: r.TaskID,
	}
}

// scheduleIDs reads {id} and {sid}.
func scheduleIDs(r *http.Request) (string, string, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return "", "", err
	}
	sid, err := pathID(r, "sid")
	return id, sid, err
}

// runIDs reads {id}, {sid} and {rid}.
func runIDs(r *http.Request) (id, sid, rid string, err error) {
	if id, sid, err = scheduleIDs(r); err != nil {
		return "", "", "", err
	}
	rid, err = pathID(r, "rid")
	return id, sid, rid, err
}

// scheduleAction reads {id} and {sid}, runs fn and answers the schedule it
// returns: the shape of every handler that changes one schedule.
func (s *Server) scheduleAction(w http.ResponseWriter, r *http.Request, fn func(id, sid string) (scheduler.View, error)) {
	id, sid, err := scheduleIDs(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	v, err := fn(id, sid)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, toScheduleJSON(v))
}

func (s *Server) body(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.d.MaxBody))
	if err != nil {
		s.fail(w, r, &fault.Error{Kind: fault.KindTooLarge, Field: "body", Msg: "request body exceeds " + strconv.FormatInt(s.d.MaxBody, 10) + " bytes"})
		return nil, false
	}
	if len(b) == 0 {
		b = []byte("{}")
	}
	return b, true
}

func actor(r *http.Request) string { return auth.FromContext(r.Context()).Actor() }

func (s *Server) listSchedules(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	vs, err := s.d.Schedules.List(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeList(w, vs, toScheduleJSON)
}

func (s *Server) createSchedule(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	b, ok := s.body(w, r)
	if !ok {
		return
	}
	v, err := s.d.Schedules.Create(r.Context(), actor(r), id, b)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, map[string]any{"id": v.ID, "status": "created", "next_run_at": timePtr(v.NextRunAt), "schedule": toScheduleJSON(v)})
}

func (s *Server) getSchedule(w http.ResponseWriter, r *http.Request) {
	id, sid, err := scheduleIDs(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	from := time.Time{}
	if v := r.URL.Query().Get("from"); v != "" {
		if from, err = time.Parse(time.RFC3339, v); err != nil {
			s.fail(w, r, fault.Invalid("from", "must be an RFC 3339 instant"))
			return
		}
	}
	v, err := s.d.Schedules.Get(r.Context(), id, sid)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if from.IsZero() {
		if from, err = s.d.Store.Now(r.Context()); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	j := toScheduleJSON(v)
	j.NextRuns = v.NextRuns(from, 10)
	runs, err := s.d.Store.ListRuns(r.Context(), store.RunFilter{ScheduleID: sid, Limit: 10})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	j.RecentRuns = make([]runJSON, 0, len(runs))
	for _, x := range runs {
		j.RecentRuns = append(j.RecentRuns, toRunJSON(x))
	}
	httpapi.WriteJSON(w, http.StatusOK, j)
}

func (s *Server) patchSchedule(w http.ResponseWriter, r *http.Request) {
	b, ok := s.body(w, r)
	if !ok {
		return
	}
	s.scheduleAction(w, r, func(id, sid string) (scheduler.View, error) {
		return s.d.Schedules.Patch(r.Context(), actor(r), id, sid, b)
	})
}

func (s *Server) deleteSchedule(w http.ResponseWriter, r *http.Request) {
	id, sid, err := scheduleIDs(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.d.Schedules.Delete(r.Context(), actor(r), id, sid); err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "deleted", "id": sid})
}

func (s *Server) pauseSchedule(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Note string `json:"note"`
	}
	if r.ContentLength != 0 && !s.decode(w, r, &body) {
		return
	}
	s.scheduleAction(w, r, func(id, sid string) (scheduler.View, error) {
		return s.d.Schedules.Pause(r.Context(), actor(r), id, sid, body.Note)
	})
}

func (s *Server) resumeSchedule(w http.ResponseWriter, r *http.Request) {
	s.scheduleAction(w, r, func(id, sid string) (scheduler.View, error) {
		return s.d.Schedules.Resume(r.Context(), actor(r), id, sid)
	})
}

func (s *Server) runSchedule(w http.ResponseWriter, r *http.Request) {
	id, sid, err := scheduleIDs(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	run, err := s.d.Schedules.RunNow(r.Context(), actor(r), id, sid)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusAccepted, map[string]any{"run_id": run.ID, "status": run.Status, "reason": run.Reason})
}

func (s *Server) scheduleHistory(w http.ResponseWriter, r *http.Request) {
	id, sid, err := scheduleIDs(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	limit, err := limitParam(r, 100, 1000)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	before, err := cursorParam(r, "before")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	runs, err := s.d.Schedules.History(r.Context(), id, sid, store.RunFilter{BeforeID: before, Limit: limit})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeList(w, runs, toRunJSON)
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) {
	id, sid, rid, err := runIDs(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	run, err := s.d.Schedules.GetRun(r.Context(), id, sid, rid)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	j := toRunJSON(run)
	j.ResponseBody = &run.ResponseBody
	httpapi.WriteJSON(w, http.StatusOK, j)
}

func (s *Server) cancelRun(w http.ResponseWriter, r *http.Request) {
	id, sid, rid, err := runIDs(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	run, err := s.d.Schedules.CancelRun(r.Context(), actor(r), id, sid, rid)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, toRunJSON(run))
}

func (s *Server) schedulerOverview(w http.ResponseWriter, r *http.Request) {
	o, err := s.d.Schedules.Overview(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	oldest := int64(0)
	if !o.Store.OldestDue.IsZero() {
		oldest = o.Now.Sub(o.Store.OldestDue).Milliseconds()
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"due_backlog": o.Store.Due, "oldest_lateness_ms": oldest,
		"in_flight": map[string]int{"pending": o.Store.Pending, "running": o.Store.Running},
		"replica": map[string]any{
			"id": o.Here.Holder, "last_claim_at": timePtr(o.Here.LastClaimAt), "last_claim_ms": o.Here.LastClaimMS,
			"last_claimed": o.Here.LastClaimed, "running": o.Here.RunningHere, "waiting_for_capacity": o.Here.WaitingCapacity,
		},
	})
}

type healthJSON struct {
	ID                  string     `json:"id"`
	WorkspaceID         string     `json:"workspace_id"`
	Name                string     `json:"name"`
	Enabled             bool       `json:"enabled"`
	NextRunAt           *time.Time `json:"next_run_at"`
	LastRunAt           *time.Time `json:"last_run_at"`
	LastStatus          string     `json:"last_status"`
	LastLatenessMS      int64      `json:"last_lateness_ms"`
	OverdueMS           int64      `json:"overdue_ms"`
	ConsecutiveFailures int64      `json:"consecutive_failures"`
	EmptyStreak         int64      `json:"empty_reply_streak"`
	Stale               bool       `json:"stale"`
	StaleReason         string     `json:"stale_reason,omitempty"`
}

func (s *Server) schedulesHealth(w http.ResponseWriter, r *http.Request) {
	limit, after, err := pageAfter(r, 1000)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	hs, err := s.d.Schedules.Health(r.Context(), after, limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeList(w, hs, func(h scheduler.Health) healthJSON {
		return healthJSON{
			ID: h.ID, WorkspaceID: h.WorkspaceID, Name: h.Name, Enabled: h.Enabled, NextRunAt: timePtr(h.NextRunAt),
			LastRunAt: timePtr(h.State.LastRunAt), LastStatus: h.State.LastStatus, LastLatenessMS: h.State.LastLatenessMS,
			OverdueMS: h.OverdueMS, ConsecutiveFailures: h.State.ConsecutiveFailures, EmptyStreak: h.State.EmptyStreak,
			Stale: h.Stale, StaleReason: h.StaleReason,
		}
	})
}

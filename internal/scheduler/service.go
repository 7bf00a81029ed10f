package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentplane/agentplane/internal/cron"
	"github.com/agentplane/agentplane/internal/fault"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/google/uuid"
)

// Service is the schedules API's domain side (SPEC §6.1).
type Service struct {
	st     store.Store
	engine *Engine
}

// NewService returns the schedules service; engine starts manual runs and
// is woken by changes.
func NewService(st store.Store, engine *Engine) *Service { return &Service{st: st, engine: engine} }

// View is a schedule as the API shows it.
type View struct {
	store.Schedule
	Spec  Spec
	State State
}

func view(sc store.Schedule) (View, error) {
	spec, err := decode[Spec](sc.Spec)
	if err != nil {
		return View{}, err
	}
	st, err := decode[State](sc.State)
	if err != nil {
		return View{}, err
	}
	return View{Schedule: sc, Spec: spec, State: st}, nil
}

// NextRuns lists the schedule's next n fire times after from.
func (v View) NextRuns(from time.Time, n int) []cron.Run {
	cs, err := v.Spec.Parse()
	if err != nil || !v.Enabled || !v.DeletedAt.IsZero() {
		return []cron.Run{}
	}
	return cs.NextRuns(from, n)
}

// Input is the body of create and the fields a PATCH may change.
type Input struct {
	Name    string
	Enabled *bool
	Spec    Spec
}

// DecodeInput reads a create body or, when base is given, a PATCH body
// over base (unknown fields ignored; a known field of the wrong type → 400
// naming it).
func DecodeInput(body []byte, base *View) (Input, map[string]bool, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return Input{}, nil, fault.Invalid("body", "must be a JSON object")
	}
	in := Input{}
	if base != nil {
		in.Name, in.Spec = base.Name, base.Spec
	}
	if v, ok := raw["name"]; ok {
		if err := json.Unmarshal(v, &in.Name); err != nil {
			return in, nil, fault.Invalid("name", "must be a string")
		}
	}
	if v, ok := raw["enabled"]; ok && string(v) != "null" {
		var b bool
		if err := json.Unmarshal(v, &b); err != nil {
			return in, nil, fault.Invalid("enabled", "must be true or false")
		}
		in.Enabled = &b
	}
	// The spec's fields: overlay the sent ones on the base, one by one, so
	// that a wrong type names its field.
	specJSON, _ := json.Marshal(in.Spec)
	var merged map[string]json.RawMessage
	_ = json.Unmarshal(specJSON, &merged)
	changed := map[string]bool{}
	for _, f := range specFields {
		v, ok := raw[f]
		if !ok {
			continue
		}
		var probe Spec
		if err := json.Unmarshal([]byte(`{"`+f+`":`+string(v)+`}`), &probe); err != nil {
			return in, nil, fault.Invalid(f, "%s", typeHint(err))
		}
		merged[f] = v
		changed[f] = true
	}
	specJSON, _ = json.Marshal(merged)
	if err := json.Unmarshal(specJSON, &in.Spec); err != nil {
		return in, nil, fault.Invalid("body", "%v", err)
	}
	// An explicit zero is a choice, never "use the default".
	if changed["timeout"] && in.Spec.Timeout == 0 {
		return in, nil, fault.Invalid("timeout", "must be between 1s and 24h")
	}
	if changed["max_attempts"] && in.Spec.MaxAttempts == 0 {
		return in, nil, fault.Invalid("max_attempts", "must be between 1 and %d", MaxAttempts)
	}
	return in, changed, nil
}

var specFields = []string{"cron_expr", "timezone", "prompt", "dst_gap", "dst_fold", "overlap_policy", "catchup_policy",
	"catchup_window", "busy_wait", "timeout", "max_attempts", "jitter", "start_at", "end_at", "pause_on_failure"}

func typeHint(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "must be a " + te.Type.String()
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func validName(name string) (string, error) {
	name = strings.TrimSpace(store.CleanText(name))
	if name == "" {
		return "", fault.Invalid("name", "must not be empty")
	}
	if len(name) > MaxNameLen {
		return "", fault.Invalid("name", "must be at most %d bytes", MaxNameLen)
	}
	return name, nil
}

func (s *Service) workspace(ctx context.Context, wsID string) error {
	ws, err := s.st.GetWorkspace(ctx, wsID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && ws.Status == store.StatusRemoved) {
		return fault.NotFound("workspace")
	}
	return err
}

// Create stores a new schedule; its first slot is the first after now.
func (s *Service) Create(ctx context.Context, actor, wsID string, body []byte) (View, error) {
	if err := s.workspace(ctx, wsID); err != nil {
		return View{}, err
	}
	in, _, err := DecodeInput(body, nil)
	if err != nil {
		return View{}, err
	}
	if in.Name, err = validName(in.Name); err != nil {
		return View{}, err
	}
	if in.Spec.CronExpr == "" {
		return View{}, fault.Invalid("cron_expr", "must not be empty")
	}
	if err := in.Spec.Normalize(); err != nil {
		return View{}, err
	}
	var out store.Schedule
	err = s.st.InTx(ctx, func(tx store.Tx) error {
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		spec := in.Spec
		spec.Anchor = now
		cs, err := spec.Parse()
		if err != nil {
			return err
		}
		specRaw, _ := json.Marshal(spec)
		stRaw, _ := json.Marshal(State{LastSlot: now})
		sc := store.Schedule{ID: uuid.Must(uuid.NewV7()).String(), WorkspaceID: wsID, Name: in.Name, Spec: specRaw, State: stRaw,
			Enabled: in.Enabled == nil || *in.Enabled, CreatedAt: now, UpdatedAt: now, UpdatedBy: actor}
		if sc.Enabled {
			sc.NextRunAt = nextAfter(cs, now)
		}
		if err := tx.InsertSchedule(ctx, sc); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return fault.Conflict("duplicate_name", "workspace already has a schedule named %q", in.Name)
			}
			return err
		}
		out = sc
		return scheduleEvent(ctx, tx, "SCHEDULE_CREATED", sc, actor, nil)
	})
	if err != nil {
		return View{}, err
	}
	s.engine.Wake()
	return view(out)
}

func scheduleEvent(ctx context.Context, tx store.Tx, typ string, sc store.Schedule, actor string, extra map[string]any) error {
	p := map[string]any{"schedule_id": sc.ID, "name": sc.Name, "actor": actor}
	for k, v := range extra {
		p[k] = v
	}
	raw, _ := json.Marshal(p)
	_, _, err := tx.AppendEvent(ctx, store.EventInput{Type: typ, WorkspaceID: sc.WorkspaceID, Audience: store.AudienceWorkspace, Actor: actor, Payload: raw})
	return err
}

// List lists a workspace's schedules.
func (s *Service) List(ctx context.Context, wsID string) ([]View, error) {
	if err := s.workspace(ctx, wsID); err != nil {
		return nil, err
	}
	scs, err := s.st.ListSchedules(ctx, wsID, 1000)
	if err != nil {
		return nil, err
	}
	out := make([]View, 0, len(scs))
	for _, sc := range scs {
		v, err := view(sc)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Get reads one live schedule of the workspace.
func (s *Service) Get(ctx context.Context, wsID, sid string) (View, error) {
	sc, err := s.st.GetSchedule(ctx, sid)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (sc.WorkspaceID != wsID || !sc.DeletedAt.IsZero())) {
		return View{}, fault.NotFound("schedule")
	}
	if err != nil {
		return View{}, err
	}
	return view(sc)
}

// mutate locks a live schedule of the workspace and applies fn.
func (s *Service) mutate(ctx context.Context, wsID, sid string, fn func(tx store.Tx, sc *store.Schedule, v *View, now time.Time) error) (View, error) {
	var out View
	err := s.st.InTx(ctx, func(tx store.Tx) error {
		sc, err := tx.LockSchedule(ctx, sid)
		if errors.Is(err, store.ErrNotFound) || (err == nil && (sc.WorkspaceID != wsID || !sc.DeletedAt.IsZero())) {
			return fault.NotFound("schedule")
		}
		if err != nil {
			return err
		}
		v, err := view(sc)
		if err != nil {
			return err
		}
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		if err := fn(tx, &sc, &v, now); err != nil {
			return err
		}
		specRaw, _ := json.Marshal(v.Spec)
		stRaw, _ := json.Marshal(v.State)
		sc.Spec, sc.State, sc.UpdatedAt = specRaw, stRaw, now
		if err := tx.UpdateSchedule(ctx, sc); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return fault.Conflict("duplicate_name", "workspace already has a schedule named %q", sc.Name)
			}
			return err
		}
		out, err = view(sc)
		return err
	})
	if err == nil {
		s.engine.Wake()
	}
	return out, err
}

// Patch changes any field. A changed cron_expr, timezone or DST policy
// drops the old spec's slots: the next slot is the new spec's first after
// now. enabled:false pauses (without a note), enabled:true resumes.
func (s *Service) Patch(ctx context.Context, actor, wsID, sid string, body []byte) (View, error) {
	return s.mutate(ctx, wsID, sid, func(tx store.Tx, sc *store.Schedule, v *View, now time.Time) error {
		in, changed, err := DecodeInput(body, v)
		if err != nil {
			return err
		}
		if sc.Name, err = validName(in.Name); err != nil {
			return err
		}
		if err := in.Spec.Normalize(); err != nil {
			return err
		}
		cs, err := in.Spec.Parse()
		if err != nil {
			return err
		}
		v.Spec = in.Spec
		if changed["cron_expr"] || changed["timezone"] || changed["dst_gap"] || changed["dst_fold"] {
			v.State.LastSlot = now
		}
		if in.Enabled != nil && *in.Enabled != sc.Enabled {
			if !*in.Enabled {
				sc.Enabled, v.State.PauseNote = false, ""
			} else {
				sc.Enabled, v.State.PauseNote, v.State.LastSlot = true, "", now
			}
		}
		sc.NextRunAt = time.Time{}
		if sc.Enabled {
			sc.NextRunAt = nextAfter(cs, v.State.LastSlot)
		}
		sc.UpdatedBy = actor
		return scheduleEvent(ctx, tx, "SCHEDULE_UPDATED", *sc, actor, nil)
	})
}

// Pause stops firing; slots that fall in the pause are not recorded at all.
func (s *Service) Pause(ctx context.Context, actor, wsID, sid, note string) (View, error) {
	note = strings.TrimSpace(store.CleanText(note))
	if len(note) > 1000 {
		return View{}, fault.Invalid("note", "must be at most 1000 bytes")
	}
	return s.mutate(ctx, wsID, sid, func(tx store.Tx, sc *store.Schedule, v *View, now time.Time) error {
		sc.Enabled, sc.NextRunAt, sc.UpdatedBy = false, time.Time{}, actor
		v.State.PauseNote = note
		return scheduleEvent(ctx, tx, "SCHEDULE_PAUSED", *sc, actor, map[string]any{"note": note})
	})
}

// Resume fires next at the next future slot; nothing in the pause is caught up.
func (s *Service) Resume(ctx context.Context, actor, wsID, sid string) (View, error) {
	return s.mutate(ctx, wsID, sid, func(tx store.Tx, sc *store.Schedule, v *View, now time.Time) error {
		cs, err := v.Spec.Parse()
		if err != nil {
			return err
		}
		sc.Enabled, sc.UpdatedBy = true, actor
		v.State.PauseNote, v.State.LastSlot = "", now
		sc.NextRunAt = nextAfter(cs, now)
		return scheduleEvent(ctx, tx, "SCHEDULE_RESUMED", *sc, actor, nil)
	})
}

// Delete stops the schedule for good; runs in flight finish and keep their
// history.
func (s *Service) Delete(ctx context.Context, actor, wsID, sid string) error {
	_, err := s.mutate(ctx, wsID, sid, func(tx store.Tx, sc *store.Schedule, v *View, now time.Time) error {
		sc.Enabled, sc.NextRunAt, sc.DeletedAt, sc.UpdatedBy = false, time.Time{}, now, actor
		return scheduleEvent(ctx, tx, "SCHEDULE_DELETED", *sc, actor, nil)
	})
	return err
}

// RunNow starts a real run now (trigger manual) through the overlap policy.
func (s *Service) RunNow(ctx context.Context, actor, wsID, sid string) (store.ScheduleRun, error) {
	var (
		run store.ScheduleRun
		j   *job
	)
	_, err := s.mutate(ctx, wsID, sid, func(tx store.Tx, sc *store.Schedule, v *View, now time.Time) error {
		j = nil
		ws, err := tx.GetWorkspace(ctx, wsID)
		if err != nil {
			return err
		}
		run = store.ScheduleRun{ID: newRunID(), ScheduleID: sc.ID, WorkspaceID: wsID, SlotTime: now, ScheduledTime: now,
			Trigger: store.TriggerManual, CreatedAt: now}
		reason, err := s.engine.blocked(ctx, tx, ws, now)
		if err != nil {
			return err
		}
		if reason == "" {
			active, err := tx.ActiveRuns(ctx, sc.ID)
			if err != nil {
				return err
			}
			if len(active) > 0 {
				reason = ReasonOverlap
			}
		}
		if reason != "" {
			run.Status, run.Reason, run.FinishedAt = store.RunSkipped, reason, now
			if _, err := tx.InsertRun(ctx, run); err != nil {
				return err
			}
			v.State.SkippedCount++
			return s.engine.outcomeRecords(ctx, tx, sc.Name, v.Spec.Prompt, run, now)
		}
		run.Status, run.ClaimedBy, run.LeaseExpiresAt, run.StartedAt = store.RunPending, s.engine.o.Holder, now.Add(RunLeaseTTL), now
		if _, err := tx.InsertRun(ctx, run); err != nil {
			return err
		}
		j = &job{run: run, sched: *sc, spec: v.Spec}
		return nil
	})
	if err != nil {
		return run, err
	}
	if j != nil {
		s.engine.dispatch(context.WithoutCancel(ctx), j)
	}
	return run, nil
}

// History pages a schedule's runs newest first.
func (s *Service) History(ctx context.Context, wsID, sid string, f store.RunFilter) ([]store.ScheduleRun, error) {
	if _, err := s.Get(ctx, wsID, sid); err != nil {
		return nil, err
	}
	f.ScheduleID = sid
	return s.st.ListRuns(ctx, f)
}

// GetRun reads one run of the schedule.
func (s *Service) GetRun(ctx context.Context, wsID, sid, rid string) (store.ScheduleRun, error) {
	r, err := s.st.GetRun(ctx, rid)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (r.ScheduleID != sid || r.WorkspaceID != wsID)) {
		return r, fault.NotFound("run")
	}
	return r, err
}

// CancelRun cancels a pending or running run: it is recorded cancelled at
// once and its agent call is cancelled (here, or by its replica's next
// lease pass).
func (s *Service) CancelRun(ctx context.Context, actor, wsID, sid, rid string) (store.ScheduleRun, error) {
	var out store.ScheduleRun
	err := s.st.InTx(ctx, func(tx store.Tx) error {
		r, err := tx.LockRun(ctx, rid)
		if errors.Is(err, store.ErrNotFound) || (err == nil && (r.ScheduleID != sid || r.WorkspaceID != wsID)) {
			return fault.NotFound("run")
		}
		if err != nil {
			return err
		}
		if Terminal(r.Status) {
			return fault.Conflict("run_finished", "run %s already ended: %s", r.ID, r.Status)
		}
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		r.Status, r.FinishedAt, r.LeaseExpiresAt = store.RunCancelled, now, time.Time{}
		r.ErrorDetail = fmt.Sprintf("cancelled by %s", actor)
		if !r.StartedAt.IsZero() {
			r.DurationMS = now.Sub(r.StartedAt).Milliseconds()
		}
		out = r
		return s.engine.record(ctx, tx, r, now)
	})
	if err == nil {
		s.engine.Cancel(rid)
	}
	return out, err
}

// Overview is GET /admin/scheduler: the state across replicas from the
// store, and this replica's own.
type Overview struct {
	Store store.SchedulerStats
	Now   time.Time
	Here  Status
}

// Overview reports the scheduler's backlog, runs in flight and the last
// claim pass of this replica.
func (s *Service) Overview(ctx context.Context) (Overview, error) {
	now, err := s.st.Now(ctx)
	if err != nil {
		return Overview{}, err
	}
	st, err := s.st.SchedulerStats(ctx, now)
	if err != nil {
		return Overview{}, err
	}
	return Overview{Store: st, Now: now, Here: s.engine.Status()}, nil
}

// StaleAfter is how overdue an enabled schedule may be before health calls
// it stale; EmptyStreakStale is how many empty replies in a row do.
const (
	StaleAfter       = time.Minute
	EmptyStreakStale = 3
)

// Health is one schedule in GET /admin/schedules/health.
type Health struct {
	View
	OverdueMS   int64
	Stale       bool
	StaleReason string
}

// Health pages every live schedule by id with its lateness and stale flag.
func (s *Service) Health(ctx context.Context, afterID string, limit int) ([]Health, error) {
	now, err := s.st.Now(ctx)
	if err != nil {
		return nil, err
	}
	scs, err := s.st.ListAllSchedules(ctx, afterID, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Health, 0, len(scs))
	for _, sc := range scs {
		v, err := view(sc)
		if err != nil {
			return nil, err
		}
		h := Health{View: v}
		if v.Enabled && !v.NextRunAt.IsZero() && now.After(v.NextRunAt) {
			h.OverdueMS = now.Sub(v.NextRunAt).Milliseconds()
		}
		switch {
		case h.OverdueMS > StaleAfter.Milliseconds():
			h.Stale, h.StaleReason = true, "overdue: no replica has claimed its slot"
		case v.State.EmptyStreak >= EmptyStreakStale:
			h.Stale, h.StaleReason = true, fmt.Sprintf("the agent's last %d replies were empty", v.State.EmptyStreak)
		}
		out = append(out, h)
	}
	return out, nil
}

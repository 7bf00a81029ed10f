package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/jackc/pgx/v5"
)

const scheduleCols = `id::text, workspace_id::text, name, spec::text, state::text, enabled, next_run_at, created_at, updated_at, updated_by, deleted_at`

const runCols = `id::text, schedule_id::text, workspace_id::text, slot_time, scheduled_time, trigger, status, attempt, started_at, finished_at,
	duration_ms, reason, error_detail, response_preview, response_body, empty_reply, wait_ms, claimed_by, lease_expires_at,
	missed_until, missed_count, message_id, task_id, created_at`

const runInsertCols = `id, schedule_id, workspace_id, slot_time, scheduled_time, trigger, status, attempt, started_at, finished_at,
	duration_ms, reason, error_detail, response_preview, response_body, empty_reply, wait_ms, claimed_by, lease_expires_at,
	missed_until, missed_count, message_id, task_id, created_at`

func timeOf(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

func scanSchedule(r pgx.Row) (store.Schedule, error) {
	var (
		s             store.Schedule
		spec, state   string
		next, deleted *time.Time
	)
	if err := r.Scan(&s.ID, &s.WorkspaceID, &s.Name, &spec, &state, &s.Enabled, &next, &s.CreatedAt, &s.UpdatedAt, &s.UpdatedBy, &deleted); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return s, fmt.Errorf("schedule: %w", store.ErrNotFound)
		}
		return s, fmt.Errorf("read schedule: %w", mapErr(err))
	}
	s.Spec, s.State = []byte(spec), []byte(state)
	s.NextRunAt, s.DeletedAt = timeOf(next), timeOf(deleted)
	s.CreatedAt, s.UpdatedAt = s.CreatedAt.UTC(), s.UpdatedAt.UTC()
	return s, nil
}

func scanRun(r pgx.Row) (store.ScheduleRun, error) {
	var (
		x                                     store.ScheduleRun
		started, finished, lease, missedUntil *time.Time
	)
	err := r.Scan(&x.ID, &x.ScheduleID, &x.WorkspaceID, &x.SlotTime, &x.ScheduledTime, &x.Trigger, &x.Status, &x.Attempt, &started, &finished,
		&x.DurationMS, &x.Reason, &x.ErrorDetail, &x.ResponsePreview, &x.ResponseBody, &x.EmptyReply, &x.WaitMS, &x.ClaimedBy, &lease,
		&missedUntil, &x.MissedCount, &x.MessageID, &x.TaskID, &x.CreatedAt)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return x, fmt.Errorf("run: %w", store.ErrNotFound)
		}
		return x, fmt.Errorf("read run: %w", mapErr(err))
	}
	x.SlotTime, x.ScheduledTime, x.CreatedAt = x.SlotTime.UTC(), x.ScheduledTime.UTC(), x.CreatedAt.UTC()
	x.StartedAt, x.FinishedAt, x.LeaseExpiresAt, x.MissedUntil = timeOf(started), timeOf(finished), timeOf(lease), timeOf(missedUntil)
	return x, nil
}

func collectSchedules(rows pgx.Rows, err error) ([]store.Schedule, error) {
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", mapErr(err))
	}
	defer rows.Close()
	var out []store.Schedule
	for rows.Next() {
		s, err := scanSchedule(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, mapErr(rows.Err())
}

func collectRuns(rows pgx.Rows, err error) ([]store.ScheduleRun, error) {
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", mapErr(err))
	}
	defer rows.Close()
	var out []store.ScheduleRun
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, mapErr(rows.Err())
}

func (s *Store) GetSchedule(ctx context.Context, id string) (store.Schedule, error) {
	return scanSchedule(s.pool.QueryRow(ctx, `SELECT `+scheduleCols+` FROM schedules WHERE id = $1::uuid`, id))
}

func (s *Store) ListSchedules(ctx context.Context, workspaceID string, limit int) ([]store.Schedule, error) {
	if limit <= 0 {
		limit = 1000
	}
	return collectSchedules(s.pool.Query(ctx, `SELECT `+scheduleCols+` FROM schedules
		WHERE workspace_id = $1::uuid AND deleted_at IS NULL ORDER BY id LIMIT $2`, workspaceID, limit))
}

func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var t *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT min(next_run_at) FROM schedules
		WHERE enabled AND deleted_at IS NULL AND next_run_at IS NOT NULL`).Scan(&t); err != nil {
		return time.Time{}, false, fmt.Errorf("next due: %w", mapErr(err))
	}
	return timeOf(t), t != nil, nil
}

func (s *Store) GetRun(ctx context.Context, id string) (store.ScheduleRun, error) {
	return scanRun(s.pool.QueryRow(ctx, `SELECT `+runCols+` FROM schedule_runs WHERE id = $1::uuid`, id))
}

func (s *Store) ListRuns(ctx context.Context, f store.RunFilter) ([]store.ScheduleRun, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	before := f.BeforeID
	if before == "" {
		before = "ffffffff-ffff-ffff-ffff-ffffffffffff"
	}
	return collectRuns(s.pool.Query(ctx, `SELECT `+runCols+` FROM schedule_runs
		WHERE schedule_id = $1::uuid AND id < $2::uuid ORDER BY id DESC LIMIT $3`, f.ScheduleID, before, limit))
}

func (s *Store) RenewRunLeases(ctx context.Context, holder string, ids []string, expiresAt time.Time) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	// SKIP LOCKED: a run being finished right now needs no renewal.
	tag, err := s.pool.Exec(ctx, `UPDATE schedule_runs SET lease_expires_at = $1 WHERE id IN (
		SELECT id FROM schedule_runs WHERE id = ANY($3::uuid[]) AND claimed_by = $2 AND status IN ('pending', 'running')
		FOR UPDATE SKIP LOCKED)`, expiresAt, holder, ids)
	if err != nil {
		return 0, fmt.Errorf("renew run leases: %w", mapErr(err))
	}
	return tag.RowsAffected(), nil
}

func (s *Store) ExpiredRuns(ctx context.Context, now time.Time, limit int) ([]store.ScheduleRun, error) {
	return collectRuns(s.pool.Query(ctx, `SELECT `+runCols+` FROM schedule_runs
		WHERE status IN ('pending', 'running') AND lease_expires_at <= $1 ORDER BY lease_expires_at LIMIT $2`, now, limit))
}

func (t *tx) InsertSchedule(ctx context.Context, sc store.Schedule) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO schedules (id, workspace_id, name, spec, state, enabled, next_run_at, created_at, updated_at, updated_by, deleted_at)
		VALUES ($1::uuid, $2::uuid, $3, $4::jsonb, $5::jsonb, $6, $7, $8, $9, $10, $11)`,
		sc.ID, sc.WorkspaceID, store.CleanText(sc.Name), string(sc.Spec), stateOrEmpty(sc.State), sc.Enabled, tsOrNil(sc.NextRunAt),
		sc.CreatedAt, sc.UpdatedAt, sc.UpdatedBy, tsOrNil(sc.DeletedAt))
	if err != nil {
		return fmt.Errorf("insert schedule: %w", mapErr(err))
	}
	return nil
}

func stateOrEmpty(b []byte) string {
	if len(b) == 0 {
		return "{}"
	}
	return string(b)
}

func (t *tx) LockSchedule(ctx context.Context, id string) (store.Schedule, error) {
	return scanSchedule(t.tx.QueryRow(ctx, `SELECT `+scheduleCols+` FROM schedules WHERE id = $1::uuid FOR UPDATE`, id))
}

func (t *tx) UpdateSchedule(ctx context.Context, sc store.Schedule) error {
	_, err := t.tx.Exec(ctx, `UPDATE schedules SET name = $1, spec = $2::jsonb, state = $3::jsonb, enabled = $4, next_run_at = $5,
		updated_at = $6, updated_by = $7, deleted_at = $8 WHERE id = $9::uuid`,
		store.CleanText(sc.Name), string(sc.Spec), stateOrEmpty(sc.State), sc.Enabled, tsOrNil(sc.NextRunAt),
		sc.UpdatedAt, sc.UpdatedBy, tsOrNil(sc.DeletedAt), sc.ID)
	if err != nil {
		return fmt.Errorf("update schedule: %w", mapErr(err))
	}
	return nil
}

func (t *tx) ClaimDueSchedules(ctx context.Context, now time.Time, limit int) ([]store.Schedule, error) {
	return collectSchedules(t.tx.Query(ctx, `SELECT `+scheduleCols+` FROM schedules
		WHERE enabled AND deleted_at IS NULL AND next_run_at IS NOT NULL AND next_run_at <= $1
		ORDER BY next_run_at LIMIT $2 FOR UPDATE SKIP LOCKED`, now, limit))
}

func (t *tx) InsertRun(ctx context.Context, r store.ScheduleRun) (bool, error) {
	tag, err := t.tx.Exec(ctx, `INSERT INTO schedule_runs (`+runInsertCols+`)
		VALUES ($1::uuid, $2::uuid, $3::uuid, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)
		ON CONFLICT (schedule_id, slot_time) WHERE trigger IN ('schedule', 'catchup') DO NOTHING`,
		r.ID, r.ScheduleID, r.WorkspaceID, r.SlotTime, r.ScheduledTime, r.Trigger, r.Status, r.Attempt,
		tsOrNil(r.StartedAt), tsOrNil(r.FinishedAt), r.DurationMS, store.CleanText(r.Reason), store.CleanText(r.ErrorDetail),
		store.CleanText(r.ResponsePreview), store.CleanText(r.ResponseBody), r.EmptyReply, r.WaitMS, r.ClaimedBy, tsOrNil(r.LeaseExpiresAt),
		tsOrNil(r.MissedUntil), r.MissedCount, r.MessageID, store.CleanText(r.TaskID), r.CreatedAt)
	if err != nil {
		return false, fmt.Errorf("insert run: %w", mapErr(err))
	}
	return tag.RowsAffected() == 1, nil
}

func (t *tx) UpdateRun(ctx context.Context, r store.ScheduleRun) error {
	_, err := t.tx.Exec(ctx, `UPDATE schedule_runs SET status = $1, attempt = $2, started_at = $3, finished_at = $4, duration_ms = $5,
		reason = $6, error_detail = $7, response_preview = $8, response_body = $9, empty_reply = $10, wait_ms = $11, claimed_by = $12,
		lease_expires_at = $13, message_id = $14, task_id = $15, scheduled_time = $16 WHERE id = $17::uuid`,
		r.Status, r.Attempt, tsOrNil(r.StartedAt), tsOrNil(r.FinishedAt), r.DurationMS, store.CleanText(r.Reason),
		store.CleanText(r.ErrorDetail), store.CleanText(r.ResponsePreview), store.CleanText(r.ResponseBody), r.EmptyReply, r.WaitMS,
		r.ClaimedBy, tsOrNil(r.LeaseExpiresAt), r.MessageID, store.CleanText(r.TaskID), r.ScheduledTime, r.ID)
	if err != nil {
		return fmt.Errorf("update run: %w", mapErr(err))
	}
	return nil
}

func (t *tx) LockRun(ctx context.Context, id string) (store.ScheduleRun, error) {
	return scanRun(t.tx.QueryRow(ctx, `SELECT `+runCols+` FROM schedule_runs WHERE id = $1::uuid FOR UPDATE`, id))
}

func (t *tx) ActiveRuns(ctx context.Context, scheduleID string) ([]store.ScheduleRun, error) {
	return collectRuns(t.tx.Query(ctx, `SELECT `+runCols+` FROM schedule_runs
		WHERE schedule_id = $1::uuid AND status IN ('pending', 'running') ORDER BY slot_time`, scheduleID))
}

func (t *tx) PruneRuns(ctx context.Context, scheduleID string, keep int) (int64, error) {
	tag, err := t.tx.Exec(ctx, `DELETE FROM schedule_runs WHERE id IN (
		SELECT id FROM schedule_runs WHERE schedule_id = $1::uuid AND status NOT IN ('pending', 'running')
		ORDER BY id DESC OFFSET $2)`, scheduleID, keep)
	if err != nil {
		return 0, fmt.Errorf("prune runs: %w", mapErr(err))
	}
	return tag.RowsAffected(), nil
}

func (s *Store) SchedulerStats(ctx context.Context, now time.Time) (store.SchedulerStats, error) {
	var (
		st     store.SchedulerStats
		oldest *time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT count(*), min(next_run_at) FROM schedules
		WHERE enabled AND deleted_at IS NULL AND next_run_at IS NOT NULL AND next_run_at <= $1`, now).Scan(&st.Due, &oldest)
	if err != nil {
		return st, fmt.Errorf("scheduler stats: %w", mapErr(err))
	}
	st.OldestDue = timeOf(oldest)
	err = s.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'running')
		FROM schedule_runs WHERE status IN ('pending', 'running')`).Scan(&st.Pending, &st.Running)
	if err != nil {
		return st, fmt.Errorf("scheduler stats: %w", mapErr(err))
	}
	return st, nil
}

func (s *Store) ListAllSchedules(ctx context.Context, afterID string, limit int) ([]store.Schedule, error) {
	if afterID == "" {
		afterID = "00000000-0000-0000-0000-000000000000"
	}
	return collectSchedules(s.pool.Query(ctx, `SELECT `+scheduleCols+` FROM schedules
		WHERE deleted_at IS NULL AND id > $1::uuid ORDER BY id LIMIT $2`, afterID, limit))
}

func (t *tx) ActiveRunCounts(ctx context.Context, ids []string) (map[string]int, error) {
	out := map[string]int{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := t.tx.Query(ctx, `SELECT schedule_id::text, count(*) FROM schedule_runs
		WHERE schedule_id = ANY($1::uuid[]) AND status IN ('pending', 'running') GROUP BY schedule_id`, ids)
	if err != nil {
		return nil, fmt.Errorf("active runs: %w", mapErr(err))
	}
	return scanCounts(rows, "active runs")
}

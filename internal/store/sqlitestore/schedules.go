package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentplane/agentplane/internal/store"
)

const scheduleCols = `id, workspace_id, name, spec, state, enabled, next_run_at, created_at, updated_at, updated_by, deleted_at`

const runCols = `id, schedule_id, workspace_id, slot_time, scheduled_time, trigger, status, attempt, started_at, finished_at,
	duration_ms, reason, error_detail, response_preview, response_body, empty_reply, wait_ms, claimed_by, lease_expires_at,
	missed_until, missed_count, message_id, task_id, created_at`

type rowScanner interface{ Scan(dest ...any) error }

// msOrNil stores a zero instant as NULL.
func msOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func fromMs(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

func scanSchedule(r rowScanner) (store.Schedule, error) {
	var (
		s                store.Schedule
		spec, state      string
		next, deleted    sql.NullInt64
		created, updated int64
		enabled          bool
	)
	if err := r.Scan(&s.ID, &s.WorkspaceID, &s.Name, &spec, &state, &enabled, &next, &created, &updated, &s.UpdatedBy, &deleted); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return s, fmt.Errorf("schedule: %w", store.ErrNotFound)
		}
		return s, fmt.Errorf("read schedule: %w", mapErr(err))
	}
	s.Spec, s.State, s.Enabled = []byte(spec), []byte(state), enabled
	s.NextRunAt, s.DeletedAt = fromMs(next), fromMs(deleted)
	s.CreatedAt, s.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return s, nil
}

func scanRun(r rowScanner) (store.ScheduleRun, error) {
	var (
		x                                     store.ScheduleRun
		slot, sched, created                  int64
		started, finished, lease, missedUntil sql.NullInt64
	)
	err := r.Scan(&x.ID, &x.ScheduleID, &x.WorkspaceID, &slot, &sched, &x.Trigger, &x.Status, &x.Attempt, &started, &finished,
		&x.DurationMS, &x.Reason, &x.ErrorDetail, &x.ResponsePreview, &x.ResponseBody, &x.EmptyReply, &x.WaitMS, &x.ClaimedBy, &lease,
		&missedUntil, &x.MissedCount, &x.MessageID, &x.TaskID, &created)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return x, fmt.Errorf("run: %w", store.ErrNotFound)
		}
		return x, fmt.Errorf("read run: %w", mapErr(err))
	}
	x.SlotTime, x.ScheduledTime, x.CreatedAt = time.UnixMilli(slot).UTC(), time.UnixMilli(sched).UTC(), time.UnixMilli(created).UTC()
	x.StartedAt, x.FinishedAt, x.LeaseExpiresAt, x.MissedUntil = fromMs(started), fromMs(finished), fromMs(lease), fromMs(missedUntil)
	return x, nil
}

func (s *Store) GetSchedule(ctx context.Context, id string) (store.Schedule, error) {
	return scanSchedule(s.r.QueryRowContext(ctx, `SELECT `+scheduleCols+` FROM schedules WHERE id = ?`, id))
}

func (s *Store) ListSchedules(ctx context.Context, workspaceID string, limit int) ([]store.Schedule, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+scheduleCols+` FROM schedules WHERE workspace_id = ? AND deleted_at IS NULL ORDER BY id LIMIT ?`, workspaceID, limit)
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", mapErr(err))
	}
	return collectSchedules(rows)
}

func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var v sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT min(next_run_at) FROM schedules WHERE enabled = 1 AND deleted_at IS NULL AND next_run_at IS NOT NULL`).Scan(&v)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next due: %w", mapErr(err))
	}
	return fromMs(v), v.Valid, nil
}

func (s *Store) GetRun(ctx context.Context, id string) (store.ScheduleRun, error) {
	return scanRun(s.r.QueryRowContext(ctx, `SELECT `+runCols+` FROM schedule_runs WHERE id = ?`, id))
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
	rows, err := s.r.QueryContext(ctx, `SELECT `+runCols+` FROM schedule_runs WHERE schedule_id = ? AND id < ? ORDER BY id DESC LIMIT ?`,
		f.ScheduleID, before, limit)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", mapErr(err))
	}
	return collectRuns(rows)
}

func collectSchedules(rows *sql.Rows) ([]store.Schedule, error) {
	defer rows.Close()
	var out []store.Schedule
	for rows.Next() {
		sc, err := scanSchedule(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, sc)
	}
	return out, mapErr(rows.Err())
}

func collectRuns(rows *sql.Rows) ([]store.ScheduleRun, error) {
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

func (s *Store) RenewRunLeases(ctx context.Context, holder string, ids []string, expiresAt time.Time) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	arr, err := json.Marshal(ids)
	if err != nil {
		return 0, err
	}
	return s.writeExec(ctx, "renew run leases", `UPDATE schedule_runs SET lease_expires_at = ?
		WHERE id IN (SELECT value FROM json_each(?)) AND claimed_by = ? AND status IN ('pending', 'running')`,
		expiresAt.UnixMilli(), string(arr), holder)
}

func (s *Store) ExpiredRuns(ctx context.Context, now time.Time, limit int) ([]store.ScheduleRun, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+runCols+` FROM schedule_runs
		WHERE status IN ('pending', 'running') AND lease_expires_at <= ? ORDER BY lease_expires_at LIMIT ?`, now.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("expired runs: %w", mapErr(err))
	}
	return collectRuns(rows)
}

func (t *tx) InsertSchedule(ctx context.Context, sc store.Schedule) error {
	_, err := t.q.ExecContext(ctx, `INSERT INTO schedules (`+scheduleCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		sc.ID, sc.WorkspaceID, store.CleanText(sc.Name), string(sc.Spec), stateOrEmpty(sc.State), sc.Enabled, msOrNil(sc.NextRunAt),
		sc.CreatedAt.UnixMilli(), sc.UpdatedAt.UnixMilli(), sc.UpdatedBy, msOrNil(sc.DeletedAt))
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
	return scanSchedule(t.q.QueryRowContext(ctx, `SELECT `+scheduleCols+` FROM schedules WHERE id = ?`, id))
}

func (t *tx) UpdateSchedule(ctx context.Context, sc store.Schedule) error {
	_, err := t.q.ExecContext(ctx, `UPDATE schedules SET name = ?, spec = ?, state = ?, enabled = ?, next_run_at = ?,
		updated_at = ?, updated_by = ?, deleted_at = ? WHERE id = ?`,
		store.CleanText(sc.Name), string(sc.Spec), stateOrEmpty(sc.State), sc.Enabled, msOrNil(sc.NextRunAt),
		sc.UpdatedAt.UnixMilli(), sc.UpdatedBy, msOrNil(sc.DeletedAt), sc.ID)
	if err != nil {
		return fmt.Errorf("update schedule: %w", mapErr(err))
	}
	return nil
}

func (t *tx) ClaimDueSchedules(ctx context.Context, now time.Time, limit int) ([]store.Schedule, error) {
	rows, err := t.q.QueryContext(ctx, `SELECT `+scheduleCols+` FROM schedules
		WHERE enabled = 1 AND deleted_at IS NULL AND next_run_at IS NOT NULL AND next_run_at <= ?
		ORDER BY next_run_at LIMIT ?`, now.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("claim schedules: %w", mapErr(err))
	}
	return collectSchedules(rows)
}

func (t *tx) InsertRun(ctx context.Context, r store.ScheduleRun) (bool, error) {
	res, err := t.q.ExecContext(ctx, `INSERT INTO schedule_runs (`+runCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (schedule_id, slot_time) WHERE trigger IN ('schedule', 'catchup') DO NOTHING`,
		r.ID, r.ScheduleID, r.WorkspaceID, r.SlotTime.UnixMilli(), r.ScheduledTime.UnixMilli(), r.Trigger, r.Status, r.Attempt,
		msOrNil(r.StartedAt), msOrNil(r.FinishedAt), r.DurationMS, store.CleanText(r.Reason), store.CleanText(r.ErrorDetail),
		store.CleanText(r.ResponsePreview), store.CleanText(r.ResponseBody), r.EmptyReply, r.WaitMS, r.ClaimedBy, msOrNil(r.LeaseExpiresAt),
		msOrNil(r.MissedUntil), r.MissedCount, r.MessageID, store.CleanText(r.TaskID), r.CreatedAt.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("insert run: %w", mapErr(err))
	}
	n, err := res.RowsAffected()
	return n == 1, mapErr(err)
}

func (t *tx) UpdateRun(ctx context.Context, r store.ScheduleRun) error {
	_, err := t.q.ExecContext(ctx, `UPDATE schedule_runs SET status = ?, attempt = ?, started_at = ?, finished_at = ?, duration_ms = ?,
		reason = ?, error_detail = ?, response_preview = ?, response_body = ?, empty_reply = ?, wait_ms = ?, claimed_by = ?,
		lease_expires_at = ?, message_id = ?, task_id = ?, scheduled_time = ? WHERE id = ?`,
		r.Status, r.Attempt, msOrNil(r.StartedAt), msOrNil(r.FinishedAt), r.DurationMS, store.CleanText(r.Reason),
		store.CleanText(r.ErrorDetail), store.CleanText(r.ResponsePreview), store.CleanText(r.ResponseBody), r.EmptyReply, r.WaitMS,
		r.ClaimedBy, msOrNil(r.LeaseExpiresAt), r.MessageID, store.CleanText(r.TaskID), r.ScheduledTime.UnixMilli(), r.ID)
	if err != nil {
		return fmt.Errorf("update run: %w", mapErr(err))
	}
	return nil
}

func (t *tx) LockRun(ctx context.Context, id string) (store.ScheduleRun, error) {
	return scanRun(t.q.QueryRowContext(ctx, `SELECT `+runCols+` FROM schedule_runs WHERE id = ?`, id))
}

func (t *tx) ActiveRuns(ctx context.Context, scheduleID string) ([]store.ScheduleRun, error) {
	rows, err := t.q.QueryContext(ctx, `SELECT `+runCols+` FROM schedule_runs
		WHERE schedule_id = ? AND status IN ('pending', 'running') ORDER BY slot_time`, scheduleID)
	if err != nil {
		return nil, fmt.Errorf("active runs: %w", mapErr(err))
	}
	return collectRuns(rows)
}

func (t *tx) PruneRuns(ctx context.Context, scheduleID string, keep int) (int64, error) {
	res, err := t.q.ExecContext(ctx, `DELETE FROM schedule_runs WHERE id IN (
		SELECT id FROM schedule_runs WHERE schedule_id = ? AND status NOT IN ('pending', 'running')
		ORDER BY id DESC LIMIT -1 OFFSET ?)`, scheduleID, keep)
	if err != nil {
		return 0, fmt.Errorf("prune runs: %w", mapErr(err))
	}
	n, err := res.RowsAffected()
	return n, mapErr(err)
}

func (s *Store) SchedulerStats(ctx context.Context, now time.Time) (store.SchedulerStats, error) {
	var (
		st     store.SchedulerStats
		oldest sql.NullInt64
	)
	err := s.r.QueryRowContext(ctx, `SELECT count(*), min(next_run_at) FROM schedules
		WHERE enabled = 1 AND deleted_at IS NULL AND next_run_at IS NOT NULL AND next_run_at <= ?`, now.UnixMilli()).Scan(&st.Due, &oldest)
	if err != nil {
		return st, fmt.Errorf("scheduler stats: %w", mapErr(err))
	}
	st.OldestDue = fromMs(oldest)
	err = s.r.QueryRowContext(ctx, `SELECT coalesce(sum(status = 'pending'), 0), coalesce(sum(status = 'running'), 0)
		FROM schedule_runs WHERE status IN ('pending', 'running')`).Scan(&st.Pending, &st.Running)
	if err != nil {
		return st, fmt.Errorf("scheduler stats: %w", mapErr(err))
	}
	return st, nil
}

func (s *Store) ListAllSchedules(ctx context.Context, afterID string, limit int) ([]store.Schedule, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+scheduleCols+` FROM schedules WHERE deleted_at IS NULL AND id > ? ORDER BY id LIMIT ?`, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", mapErr(err))
	}
	return collectSchedules(rows)
}

func (t *tx) ActiveRunCounts(ctx context.Context, ids []string) (map[string]int, error) {
	out := map[string]int{}
	if len(ids) == 0 {
		return out, nil
	}
	arr, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	rows, err := t.q.QueryContext(ctx, `SELECT schedule_id, count(*) FROM schedule_runs
		WHERE schedule_id IN (SELECT value FROM json_each(?)) AND status IN ('pending', 'running') GROUP BY schedule_id`, string(arr))
	if err != nil {
		return nil, fmt.Errorf("active runs: %w", mapErr(err))
	}
	return scanCounts(rows, "active runs")
}

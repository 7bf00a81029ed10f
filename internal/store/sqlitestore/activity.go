package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/agentplane/agentplane/internal/store"
)

const activityCols = `id, workspace_id, activity_type, source, source_id, target_id, method, summary, request_body,
	response_body, request_truncated, response_truncated, status, error_detail, duration_ms, attachments, created_at`

func (t *tx) InsertActivity(ctx context.Context, a store.Activity) error {
	var att any
	if len(a.Attachments) > 0 {
		att = string(a.Attachments)
	}
	_, err := t.q.ExecContext(ctx, `INSERT INTO activity_logs (`+activityCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.ID, a.WorkspaceID, a.ActivityType, a.Source, a.SourceID, a.TargetID, a.Method, a.Summary, a.RequestBody,
		a.ResponseBody, a.RequestTruncated, a.ResponseTruncated, a.Status, a.ErrorDetail, a.DurationMS, att, a.CreatedAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("insert activity: %w", mapErr(err))
	}
	return nil
}

// InsertActivities inserts row by row: in-process statements cost no round
// trip.
func (t *tx) InsertActivities(ctx context.Context, as []store.Activity) error {
	for _, a := range as {
		if err := t.InsertActivity(ctx, a); err != nil {
			return err
		}
	}
	return nil
}

// ListActivity pages newest first by id (UUIDv7: time order).
func (s *Store) ListActivity(ctx context.Context, f store.ActivityFilter) ([]store.Activity, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	before := f.BeforeID
	if before == "" {
		before = "ffffffff-ffff-ffff-ffff-ffffffffffff"
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+activityCols+` FROM activity_logs
		WHERE workspace_id = ? AND id < ? AND (? = '' OR activity_type = ?) AND (? = '' OR source = ?)
		ORDER BY id DESC LIMIT ?`, f.WorkspaceID, before, f.Type, f.Type, f.Source, f.Source, limit)
	if err != nil {
		return nil, fmt.Errorf("list activity: %w", mapErr(err))
	}
	defer rows.Close()
	var out []store.Activity
	for rows.Next() {
		var (
			a   store.Activity
			att sql.NullString
			ms  int64
		)
		if err := rows.Scan(&a.ID, &a.WorkspaceID, &a.ActivityType, &a.Source, &a.SourceID, &a.TargetID, &a.Method, &a.Summary,
			&a.RequestBody, &a.ResponseBody, &a.RequestTruncated, &a.ResponseTruncated, &a.Status, &a.ErrorDetail,
			&a.DurationMS, &att, &ms); err != nil {
			return nil, fmt.Errorf("list activity: %w", mapErr(err))
		}
		if att.Valid {
			a.Attachments = json.RawMessage(att.String)
		}
		a.CreatedAt = time.UnixMilli(ms).UTC()
		out = append(out, a)
	}
	return out, mapErr(rows.Err())
}

// ListEvents filters persisted events for GET /events.
func (s *Store) ListEvents(ctx context.Context, f store.EventFilter) ([]store.Event, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id, type, COALESCE(workspace_id, ''), audience, payload, actor, created_at
		FROM events WHERE id > ? AND (? <= 0 OR id <= ?) AND (? = '' OR workspace_id = ?) AND (? = '' OR type = ?) ORDER BY id LIMIT ?`,
		f.AfterID, f.UpToID, f.UpToID, f.WorkspaceID, f.WorkspaceID, f.Type, f.Type, limit)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", mapErr(err))
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		var (
			ev      store.Event
			aud     string
			payload string
			ms      int64
		)
		if err := rows.Scan(&ev.ID, &ev.Type, &ev.WorkspaceID, &aud, &payload, &ev.Actor, &ms); err != nil {
			return nil, fmt.Errorf("list events: %w", mapErr(err))
		}
		ev.Audience, ev.Payload, ev.CreatedAt = store.Audience(aud), json.RawMessage(payload), time.UnixMilli(ms).UTC()
		out = append(out, ev)
	}
	return out, mapErr(rows.Err())
}

// ListSecurityEvents pages newest first.
func (s *Store) ListSecurityEvents(ctx context.Context, f store.SecurityEventFilter) ([]store.SecurityEvent, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	before := f.BeforeID
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id, kind, COALESCE(workspace_id, ''), actor, client_ip, detail, created_at
		FROM security_events WHERE id < ? ORDER BY id DESC LIMIT ?`, before, limit)
	if err != nil {
		return nil, fmt.Errorf("list security events: %w", mapErr(err))
	}
	defer rows.Close()
	var out []store.SecurityEvent
	for rows.Next() {
		var (
			e      store.SecurityEvent
			detail string
			ms     int64
		)
		if err := rows.Scan(&e.ID, &e.Kind, &e.WorkspaceID, &e.Actor, &e.ClientIP, &detail, &ms); err != nil {
			return nil, fmt.Errorf("list security events: %w", mapErr(err))
		}
		e.Detail, e.CreatedAt = json.RawMessage(detail), time.UnixMilli(ms).UTC()
		out = append(out, e)
	}
	return out, mapErr(rows.Err())
}

// PruneActivity deletes one bounded batch of old activity.
func (s *Store) PruneActivity(ctx context.Context, cutoff time.Time, batch int) (int64, error) {
	return s.writeExec(ctx, "prune activity", `DELETE FROM activity_logs WHERE id IN (
		SELECT id FROM activity_logs WHERE created_at < ? ORDER BY created_at LIMIT ?)`, cutoff.UnixMilli(), batch)
}

package pgstore

import (
	"context"
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
	_, err := t.tx.Exec(ctx, `INSERT INTO activity_logs (`+activityCols+`)
		VALUES ($1::uuid, $2::uuid, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16::jsonb, $17)`,
		a.ID, a.WorkspaceID, a.ActivityType, a.Source, a.SourceID, a.TargetID, a.Method, a.Summary, a.RequestBody,
		a.ResponseBody, a.RequestTruncated, a.ResponseTruncated, a.Status, a.ErrorDetail, a.DurationMS, att, a.CreatedAt)
	if err != nil {
		return fmt.Errorf("insert activity: %w", mapErr(err))
	}
	return nil
}

// InsertActivities inserts every row with one statement (one round trip)
// by passing each column as an array.
func (t *tx) InsertActivities(ctx context.Context, as []store.Activity) error {
	switch len(as) {
	case 0:
		return nil
	case 1:
		return t.InsertActivity(ctx, as[0])
	}
	var (
		ids, wss, types, sources, sourceIDs, targets, methods, summaries, reqs, resps []string
		reqTrunc, respTrunc                                                           []bool
		statuses, details                                                             []string
		durations                                                                     []int64
		atts                                                                          []*string
		created                                                                       []time.Time
	)
	for _, a := range as {
		ids, wss, types, sources = append(ids, a.ID), append(wss, a.WorkspaceID), append(types, a.ActivityType), append(sources, a.Source)
		sourceIDs, targets, methods = append(sourceIDs, a.SourceID), append(targets, a.TargetID), append(methods, a.Method)
		summaries, reqs, resps = append(summaries, a.Summary), append(reqs, a.RequestBody), append(resps, a.ResponseBody)
		reqTrunc, respTrunc = append(reqTrunc, a.RequestTruncated), append(respTrunc, a.ResponseTruncated)
		statuses, details, durations = append(statuses, a.Status), append(details, a.ErrorDetail), append(durations, a.DurationMS)
		var att *string
		if len(a.Attachments) > 0 {
			s := string(a.Attachments)
			att = &s
		}
		atts, created = append(atts, att), append(created, a.CreatedAt)
	}
	_, err := t.tx.Exec(ctx, `INSERT INTO activity_logs (`+activityCols+`)
		SELECT id::uuid, ws::uuid, ty, src, sid, tid, m, su, rq, rs, rqt, rst, st, ed, d, att::jsonb, ca
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
			$10::text[], $11::bool[], $12::bool[], $13::text[], $14::text[], $15::bigint[], $16::text[], $17::timestamptz[])
			AS u(id, ws, ty, src, sid, tid, m, su, rq, rs, rqt, rst, st, ed, d, att, ca)`,
		ids, wss, types, sources, sourceIDs, targets, methods, summaries, reqs, resps, reqTrunc, respTrunc, statuses, details, durations, atts, created)
	if err != nil {
		return fmt.Errorf("insert activity: %w", mapErr(err))
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
	rows, err := s.pool.Query(ctx, `SELECT id::text, workspace_id::text, activity_type, source, source_id, target_id, method,
		summary, request_body, response_body, request_truncated, response_truncated, status, error_detail, duration_ms,
		attachments::text, created_at
		FROM activity_logs
		WHERE workspace_id = $1::uuid AND id < $2::uuid AND ($3 = '' OR activity_type = $3) AND ($4 = '' OR source = $4)
		ORDER BY id DESC LIMIT $5`, f.WorkspaceID, before, f.Type, f.Source, limit)
	if err != nil {
		return nil, fmt.Errorf("list activity: %w", mapErr(err))
	}
	defer rows.Close()
	var out []store.Activity
	for rows.Next() {
		var (
			a   store.Activity
			att *string
		)
		if err := rows.Scan(&a.ID, &a.WorkspaceID, &a.ActivityType, &a.Source, &a.SourceID, &a.TargetID, &a.Method, &a.Summary,
			&a.RequestBody, &a.ResponseBody, &a.RequestTruncated, &a.ResponseTruncated, &a.Status, &a.ErrorDetail,
			&a.DurationMS, &att, &a.CreatedAt); err != nil {
			return nil, fmt.Errorf("list activity: %w", mapErr(err))
		}
		if att != nil {
			a.Attachments = json.RawMessage(*att)
		}
		a.CreatedAt = a.CreatedAt.UTC()
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
	rows, err := s.pool.Query(ctx, `SELECT id, type, COALESCE(workspace_id::text, ''), audience, payload::text, actor, created_at, txid::text
		FROM events WHERE id > $1 AND ($5::bigint <= 0 OR id <= $5) AND ($2 = '' OR workspace_id = NULLIF($2, '')::uuid) AND ($3 = '' OR type = $3)
		ORDER BY id LIMIT $4`, f.AfterID, f.WorkspaceID, f.Type, limit, f.UpToID)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", mapErr(err))
	}
	defer rows.Close()
	return scanEvents(rows)
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
	rows, err := s.pool.Query(ctx, `SELECT id, kind, COALESCE(workspace_id::text, ''), actor, client_ip, detail::text, created_at
		FROM security_events WHERE id < $1 ORDER BY id DESC LIMIT $2`, before, limit)
	if err != nil {
		return nil, fmt.Errorf("list security events: %w", mapErr(err))
	}
	defer rows.Close()
	var out []store.SecurityEvent
	for rows.Next() {
		var (
			e      store.SecurityEvent
			detail string
		)
		if err := rows.Scan(&e.ID, &e.Kind, &e.WorkspaceID, &e.Actor, &e.ClientIP, &detail, &e.CreatedAt); err != nil {
			return nil, fmt.Errorf("list security events: %w", mapErr(err))
		}
		e.Detail, e.CreatedAt = json.RawMessage(detail), e.CreatedAt.UTC()
		out = append(out, e)
	}
	return out, mapErr(rows.Err())
}

// PruneActivity deletes one bounded batch of old activity, skipping rows
// another replica is pruning.
func (s *Store) PruneActivity(ctx context.Context, cutoff time.Time, batch int) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM activity_logs WHERE id IN (
		SELECT id FROM activity_logs WHERE created_at < $1 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)`, cutoff, batch)
	if err != nil {
		return 0, fmt.Errorf("prune activity: %w", mapErr(err))
	}
	return tag.RowsAffected(), nil
}

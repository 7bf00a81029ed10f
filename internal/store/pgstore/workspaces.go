package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// querier is satisfied by the pool and by a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func tsOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

func fromTS(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

const workspaceCols = `id::text, name, role, COALESCE(parent_id::text, ''), url, agent_card::text, status, degraded_reasons::text,
	pause_origin, max_concurrent_tasks, active_tasks, current_task, last_heartbeat_at, last_error_rate, last_sample_error,
	uptime_seconds, probe_failures, last_probe_at, outbound_secret, version, created_at, updated_at, updated_by`

func scanWorkspace(row pgx.Row) (store.Workspace, error) {
	var (
		w                 store.Workspace
		card              *string
		reasons           string
		lastHB, lastProbe *time.Time
	)
	err := row.Scan(&w.ID, &w.Name, &w.Role, &w.ParentID, &w.URL, &card, &w.Status, &reasons, &w.PauseOrigin,
		&w.MaxConcurrentTasks, &w.ActiveTasks, &w.CurrentTask, &lastHB, &w.LastErrorRate, &w.LastSampleError,
		&w.UptimeSeconds, &w.ProbeFailures, &lastProbe, &w.OutboundSecret, &w.Version, &w.CreatedAt, &w.UpdatedAt, &w.UpdatedBy)
	if err != nil {
		return w, err
	}
	if card != nil {
		w.AgentCard = json.RawMessage(*card)
	}
	if err := json.Unmarshal([]byte(reasons), &w.DegradedReasons); err != nil {
		return w, fmt.Errorf("degraded_reasons of %s: %w", w.ID, err)
	}
	if len(w.DegradedReasons) == 0 {
		w.DegradedReasons = nil
	}
	w.LastHeartbeatAt, w.LastProbeAt = fromTS(lastHB), fromTS(lastProbe)
	w.CreatedAt, w.UpdatedAt = w.CreatedAt.UTC(), w.UpdatedAt.UTC()
	return w, nil
}

func getWorkspace(ctx context.Context, q querier, id string) (store.Workspace, error) {
	if _, err := uuid.Parse(id); err != nil {
		return store.Workspace{}, fmt.Errorf("workspace %q: %w", id, store.ErrNotFound)
	}
	w, err := scanWorkspace(q.QueryRow(ctx, `SELECT `+workspaceCols+` FROM workspaces WHERE id = $1::uuid`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return w, fmt.Errorf("workspace %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return w, fmt.Errorf("get workspace %s: %w", id, mapErr(err))
	}
	return w, nil
}

func queryWorkspaces(ctx context.Context, q querier, query string, args ...any) ([]store.Workspace, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.Workspace
	for rows.Next() {
		w, err := scanWorkspace(rows)
		if err != nil {
			return nil, mapErr(err)
		}
		out = append(out, w)
	}
	return out, mapErr(rows.Err())
}

func reasonsJSON(r []string) string {
	if len(r) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(r)
	return string(b)
}

func cardValue(c json.RawMessage) any {
	if len(c) == 0 {
		return nil
	}
	return string(c)
}

// GetWorkspace reads one workspace.
func (s *Store) GetWorkspace(ctx context.Context, id string) (store.Workspace, error) {
	return getWorkspace(ctx, s.pool, id)
}

// ListWorkspaces pages by id.
func (s *Store) ListWorkspaces(ctx context.Context, f store.WorkspaceFilter) ([]store.Workspace, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	after := f.AfterID
	if after == "" {
		after = "00000000-0000-0000-0000-000000000000"
	}
	ws, err := queryWorkspaces(ctx, s.pool, `SELECT `+workspaceCols+` FROM workspaces
		WHERE id > $1::uuid AND ($2 OR status <> 'removed') ORDER BY id LIMIT $3`, after, f.IncludeRemoved, limit)
	if err != nil {
		return nil, fmt.Errorf("list workspaces: %w", err)
	}
	return ws, nil
}

func hierarchy(ctx context.Context, q querier) ([]store.HierarchyNode, int64, error) {
	var version int64
	if err := q.QueryRow(ctx, `SELECT value FROM meta WHERE key = 'hierarchy_version'`).Scan(&version); err != nil {
		return nil, 0, fmt.Errorf("hierarchy version: %w", mapErr(err))
	}
	rows, err := q.Query(ctx, `SELECT id::text, COALESCE(parent_id::text, ''), status, name FROM workspaces WHERE status <> 'removed'`)
	if err != nil {
		return nil, 0, fmt.Errorf("hierarchy: %w", mapErr(err))
	}
	defer rows.Close()
	var out []store.HierarchyNode
	for rows.Next() {
		var n store.HierarchyNode
		if err := rows.Scan(&n.ID, &n.ParentID, &n.Status, &n.Name); err != nil {
			return nil, 0, fmt.Errorf("hierarchy: %w", mapErr(err))
		}
		out = append(out, n)
	}
	return out, version, mapErr(rows.Err())
}

// Hierarchy reads version and links in one REPEATABLE READ snapshot.
func (s *Store) Hierarchy(ctx context.Context) ([]store.HierarchyNode, int64, error) {
	var (
		nodes   []store.HierarchyNode
		version int64
	)
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		nodes, version, err = hierarchy(ctx, tx)
		return err
	})
	if err != nil {
		return nil, 0, mapErr(err)
	}
	return nodes, version, nil
}

// HierarchyVersion returns the current hierarchy version.
func (s *Store) HierarchyVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := s.pool.QueryRow(ctx, `SELECT value FROM meta WHERE key = 'hierarchy_version'`).Scan(&v); err != nil {
		return 0, fmt.Errorf("hierarchy version: %w", mapErr(err))
	}
	return v, nil
}

// ExpiredHeartbeats uses the (status, last_heartbeat_at) index.
func (s *Store) ExpiredHeartbeats(ctx context.Context, cutoff time.Time, limit int) ([]store.Workspace, error) {
	ws, err := queryWorkspaces(ctx, s.pool, `SELECT `+workspaceCols+` FROM workspaces
		WHERE status IN ('online', 'degraded') AND last_heartbeat_at < $1 ORDER BY last_heartbeat_at LIMIT $2`, cutoff, limit)
	if err != nil {
		return nil, fmt.Errorf("expired heartbeats: %w", err)
	}
	return ws, nil
}

// OldestHeartbeat returns the next heartbeat to expire.
func (s *Store) OldestHeartbeat(ctx context.Context) (time.Time, error) {
	var t *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT MIN(last_heartbeat_at) FROM workspaces WHERE status IN ('online', 'degraded')`).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("oldest heartbeat: %w", mapErr(err))
	}
	return fromTS(t), nil
}

// ProbeTargets pages through workspaces the health sweep probes.
func (s *Store) ProbeTargets(ctx context.Context, afterID string, limit int) ([]store.Workspace, error) {
	if afterID == "" {
		afterID = "00000000-0000-0000-0000-000000000000"
	}
	ws, err := queryWorkspaces(ctx, s.pool, `SELECT `+workspaceCols+` FROM workspaces
		WHERE status IN ('online', 'degraded') AND url <> '' AND id > $1::uuid ORDER BY id LIMIT $2`, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("probe targets: %w", err)
	}
	return ws, nil
}

func (t *tx) GetWorkspace(ctx context.Context, id string) (store.Workspace, error) {
	return getWorkspace(ctx, t.tx, id)
}

func (t *tx) InsertWorkspace(ctx context.Context, w store.Workspace) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO workspaces (id, name, role, parent_id, url, agent_card, status, degraded_reasons,
		pause_origin, max_concurrent_tasks, active_tasks, current_task, last_heartbeat_at, last_error_rate, last_sample_error,
		uptime_seconds, probe_failures, outbound_secret, version, created_at, updated_at, updated_by)
		VALUES ($1::uuid, $2, $3, NULLIF($4, '')::uuid, $5, $6::jsonb, $7, $8::jsonb, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, 1, $19, $20, $21)`,
		w.ID, w.Name, w.Role, w.ParentID, w.URL, cardValue(w.AgentCard), w.Status, reasonsJSON(w.DegradedReasons),
		w.PauseOrigin, w.MaxConcurrentTasks, w.ActiveTasks, w.CurrentTask, tsOrNil(w.LastHeartbeatAt), w.LastErrorRate,
		w.LastSampleError, w.UptimeSeconds, w.ProbeFailures, w.OutboundSecret, w.CreatedAt, w.UpdatedAt, w.UpdatedBy)
	if err != nil {
		return fmt.Errorf("insert workspace: %w", mapErr(err))
	}
	return nil
}

func (t *tx) UpdateWorkspace(ctx context.Context, w store.Workspace) (bool, error) {
	tag, err := t.tx.Exec(ctx, `UPDATE workspaces SET name = $1, role = $2, parent_id = NULLIF($3, '')::uuid, url = $4,
		agent_card = $5::jsonb, status = $6, degraded_reasons = $7::jsonb, pause_origin = $8, max_concurrent_tasks = $9,
		active_tasks = $10, current_task = $11, last_heartbeat_at = $12, last_error_rate = $13, last_sample_error = $14,
		uptime_seconds = $15, probe_failures = $16, version = version + 1, updated_at = $17, updated_by = $18,
		last_probe_at = $21
		WHERE id = $19::uuid AND version = $20`,
		w.Name, w.Role, w.ParentID, w.URL, cardValue(w.AgentCard), w.Status, reasonsJSON(w.DegradedReasons), w.PauseOrigin,
		w.MaxConcurrentTasks, w.ActiveTasks, w.CurrentTask, tsOrNil(w.LastHeartbeatAt), w.LastErrorRate, w.LastSampleError,
		w.UptimeSeconds, w.ProbeFailures, w.UpdatedAt, w.UpdatedBy, w.ID, w.Version, tsOrNil(w.LastProbeAt))
	if err != nil {
		return false, fmt.Errorf("update workspace %s: %w", w.ID, mapErr(err))
	}
	return tag.RowsAffected() == 1, nil
}

func (t *tx) Hierarchy(ctx context.Context) ([]store.HierarchyNode, int64, error) {
	return hierarchy(ctx, t.tx)
}

// LockHierarchy takes the hierarchy version row's lock until commit.
func (t *tx) LockHierarchy(ctx context.Context) error {
	if _, err := t.tx.Exec(ctx, `SELECT value FROM meta WHERE key = 'hierarchy_version' FOR UPDATE`); err != nil {
		return fmt.Errorf("lock hierarchy: %w", mapErr(err))
	}
	return nil
}

func (t *tx) BumpHierarchyVersion(ctx context.Context) error {
	if _, err := t.tx.Exec(ctx, `UPDATE meta SET value = value + 1 WHERE key = 'hierarchy_version'`); err != nil {
		return fmt.Errorf("bump hierarchy version: %w", mapErr(err))
	}
	return nil
}

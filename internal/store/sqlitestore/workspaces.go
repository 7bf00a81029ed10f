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

// querier is satisfied by *sql.DB (read pool) and *sql.Tx (writer), so each
// query is written once and used both outside and inside transactions.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

type scanner interface{ Scan(dest ...any) error }

func ms(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func fromMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

const workspaceCols = `id, name, role, COALESCE(parent_id, ''), url, agent_card, status, degraded_reasons, pause_origin,
	max_concurrent_tasks, active_tasks, current_task, last_heartbeat_at, last_error_rate, last_sample_error,
	uptime_seconds, probe_failures, last_probe_at, outbound_secret, version, created_at, updated_at, updated_by`

func scanWorkspace(row scanner) (store.Workspace, error) {
	var (
		w                 store.Workspace
		card              sql.NullString
		reasons           string
		lastHB, lastProbe sql.NullInt64
		created, updated  int64
	)
	err := row.Scan(&w.ID, &w.Name, &w.Role, &w.ParentID, &w.URL, &card, &w.Status, &reasons, &w.PauseOrigin,
		&w.MaxConcurrentTasks, &w.ActiveTasks, &w.CurrentTask, &lastHB, &w.LastErrorRate, &w.LastSampleError,
		&w.UptimeSeconds, &w.ProbeFailures, &lastProbe, &w.OutboundSecret, &w.Version, &created, &updated, &w.UpdatedBy)
	if err != nil {
		return w, err
	}
	if card.Valid {
		w.AgentCard = json.RawMessage(card.String)
	}
	if err := json.Unmarshal([]byte(reasons), &w.DegradedReasons); err != nil {
		return w, fmt.Errorf("degraded_reasons of %s: %w", w.ID, err)
	}
	if len(w.DegradedReasons) == 0 {
		w.DegradedReasons = nil
	}
	w.LastHeartbeatAt, w.LastProbeAt = fromMS(lastHB), fromMS(lastProbe)
	w.CreatedAt = time.UnixMilli(created).UTC()
	w.UpdatedAt = time.UnixMilli(updated).UTC()
	return w, nil
}

func getWorkspace(ctx context.Context, q querier, id string) (store.Workspace, error) {
	w, err := scanWorkspace(q.QueryRowContext(ctx, `SELECT `+workspaceCols+` FROM workspaces WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return w, fmt.Errorf("workspace %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return w, fmt.Errorf("get workspace %s: %w", id, mapErr(err))
	}
	return w, nil
}

func queryWorkspaces(ctx context.Context, q querier, query string, args ...any) ([]store.Workspace, error) {
	rows, err := q.QueryContext(ctx, query, args...)
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

// GetWorkspace reads one workspace from the read pool.
func (s *Store) GetWorkspace(ctx context.Context, id string) (store.Workspace, error) {
	return getWorkspace(ctx, s.r, id)
}

// ListWorkspaces pages by id.
func (s *Store) ListWorkspaces(ctx context.Context, f store.WorkspaceFilter) ([]store.Workspace, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	ws, err := queryWorkspaces(ctx, s.r, `SELECT `+workspaceCols+` FROM workspaces
		WHERE id > ? AND (? OR status <> 'removed') ORDER BY id LIMIT ?`, f.AfterID, f.IncludeRemoved, limit)
	if err != nil {
		return nil, fmt.Errorf("list workspaces: %w", err)
	}
	return ws, nil
}

func hierarchy(ctx context.Context, q querier) ([]store.HierarchyNode, int64, error) {
	var version int64
	if err := q.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'hierarchy_version'`).Scan(&version); err != nil {
		return nil, 0, fmt.Errorf("hierarchy version: %w", mapErr(err))
	}
	rows, err := q.QueryContext(ctx, `SELECT id, COALESCE(parent_id, ''), status, name FROM workspaces WHERE status <> 'removed'`)
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

// Hierarchy reads the parent links from the read pool. Version and rows come
// from one read transaction so they are consistent.
func (s *Store) Hierarchy(ctx context.Context) ([]store.HierarchyNode, int64, error) {
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, fmt.Errorf("hierarchy: %w", mapErr(err))
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	return hierarchy(ctx, tx)
}

// HierarchyVersion returns the current hierarchy version.
func (s *Store) HierarchyVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := s.r.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'hierarchy_version'`).Scan(&v); err != nil {
		return 0, fmt.Errorf("hierarchy version: %w", mapErr(err))
	}
	return v, nil
}

// ExpiredHeartbeats uses the (status, last_heartbeat_at) index.
func (s *Store) ExpiredHeartbeats(ctx context.Context, cutoff time.Time, limit int) ([]store.Workspace, error) {
	ws, err := queryWorkspaces(ctx, s.r, `SELECT `+workspaceCols+` FROM workspaces
		WHERE status IN ('online', 'degraded') AND last_heartbeat_at < ? ORDER BY last_heartbeat_at LIMIT ?`,
		cutoff.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("expired heartbeats: %w", err)
	}
	return ws, nil
}

// OldestHeartbeat returns the next heartbeat to expire.
func (s *Store) OldestHeartbeat(ctx context.Context) (time.Time, error) {
	var v sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT MIN(last_heartbeat_at) FROM workspaces WHERE status IN ('online', 'degraded')`).Scan(&v)
	if err != nil {
		return time.Time{}, fmt.Errorf("oldest heartbeat: %w", mapErr(err))
	}
	return fromMS(v), nil
}

// ProbeTargets pages through workspaces the health sweep probes.
func (s *Store) ProbeTargets(ctx context.Context, afterID string, limit int) ([]store.Workspace, error) {
	ws, err := queryWorkspaces(ctx, s.r, `SELECT `+workspaceCols+` FROM workspaces
		WHERE status IN ('online', 'degraded') AND url <> '' AND id > ? ORDER BY id LIMIT ?`, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("probe targets: %w", err)
	}
	return ws, nil
}

func (t *tx) GetWorkspace(ctx context.Context, id string) (store.Workspace, error) {
	return getWorkspace(ctx, t.q, id)
}

func (t *tx) InsertWorkspace(ctx context.Context, w store.Workspace) error {
	_, err := t.q.ExecContext(ctx, `INSERT INTO workspaces (id, name, role, parent_id, url, agent_card, status, degraded_reasons,
		pause_origin, max_concurrent_tasks, active_tasks, current_task, last_heartbeat_at, last_error_rate, last_sample_error,
		uptime_seconds, probe_failures, outbound_secret, version, created_at, updated_at, updated_by)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)`,
		w.ID, w.Name, w.Role, nullString(w.ParentID), w.URL, cardValue(w.AgentCard), w.Status, reasonsJSON(w.DegradedReasons),
		w.PauseOrigin, w.MaxConcurrentTasks, w.ActiveTasks, w.CurrentTask, ms(w.LastHeartbeatAt), w.LastErrorRate, w.LastSampleError,
		w.UptimeSeconds, w.ProbeFailures, w.OutboundSecret, w.CreatedAt.UnixMilli(), w.UpdatedAt.UnixMilli(), w.UpdatedBy)
	if err != nil {
		return fmt.Errorf("insert workspace: %w", mapErr(err))
	}
	return nil
}

func (t *tx) UpdateWorkspace(ctx context.Context, w store.Workspace) (bool, error) {
	res, err := t.q.ExecContext(ctx, `UPDATE workspaces SET name = ?, role = ?, parent_id = ?, url = ?, agent_card = ?,
		status = ?, degraded_reasons = ?, pause_origin = ?, max_concurrent_tasks = ?, active_tasks = ?, current_task = ?,
		last_heartbeat_at = ?, last_error_rate = ?, last_sample_error = ?, uptime_seconds = ?, probe_failures = ?,
		last_probe_at = ?, version = version + 1, updated_at = ?, updated_by = ?
		WHERE id = ? AND version = ?`,
		w.Name, w.Role, nullString(w.ParentID), w.URL, cardValue(w.AgentCard), w.Status, reasonsJSON(w.DegradedReasons),
		w.PauseOrigin, w.MaxConcurrentTasks, w.ActiveTasks, w.CurrentTask, ms(w.LastHeartbeatAt), w.LastErrorRate,
		w.LastSampleError, w.UptimeSeconds, w.ProbeFailures, ms(w.LastProbeAt), w.UpdatedAt.UnixMilli(), w.UpdatedBy, w.ID, w.Version)
	if err != nil {
		return false, fmt.Errorf("update workspace %s: %w", w.ID, mapErr(err))
	}
	n, err := res.RowsAffected()
	return n == 1, mapErr(err)
}

func (t *tx) Hierarchy(ctx context.Context) ([]store.HierarchyNode, int64, error) {
	return hierarchy(ctx, t.q)
}

// LockHierarchy is a no-op on SQLite: write transactions already run one at
// a time (IMMEDIATE, behind the writer semaphore).
func (t *tx) LockHierarchy(context.Context) error { return nil }

func (t *tx) BumpHierarchyVersion(ctx context.Context) error {
	_, err := t.q.ExecContext(ctx, `UPDATE meta SET value = value + 1 WHERE key = 'hierarchy_version'`)
	if err != nil {
		return fmt.Errorf("bump hierarchy version: %w", mapErr(err))
	}
	return nil
}

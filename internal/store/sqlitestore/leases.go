package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/agentplane/agentplane/internal/store"
)

// AcquireLease reads the workspace's slots and takes the lowest free one.
// The read-then-write is safe here because every SQLite write transaction
// holds the one writer lock from BEGIN IMMEDIATE to commit.
func (t *tx) AcquireLease(ctx context.Context, l store.Lease, max int) (store.Lease, bool, error) {
	if max <= 0 {
		return l, false, nil
	}
	now := l.AcquiredAt.UnixMilli()
	rows, err := t.q.QueryContext(ctx, `SELECT slot, expires_at FROM leases WHERE workspace_id = ? AND slot < ? ORDER BY slot`, l.WorkspaceID, max)
	if err != nil {
		return l, false, fmt.Errorf("read leases: %w", mapErr(err))
	}
	slot := 0
	for rows.Next() {
		var s int
		var exp int64
		if err := rows.Scan(&s, &exp); err != nil {
			rows.Close()
			return l, false, fmt.Errorf("read leases: %w", mapErr(err))
		}
		if s != slot || exp <= now {
			break // a gap, or an expired lease to take over
		}
		slot++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return l, false, fmt.Errorf("read leases: %w", mapErr(err))
	}
	if slot >= max {
		return l, false, nil
	}
	l.Slot = slot
	res, err := t.q.ExecContext(ctx, `INSERT INTO leases (workspace_id, slot, id, holder, purpose, ref, acquired_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (workspace_id, slot) DO UPDATE SET id = excluded.id, holder = excluded.holder, purpose = excluded.purpose,
			ref = excluded.ref, acquired_at = excluded.acquired_at, expires_at = excluded.expires_at
		WHERE leases.expires_at <= excluded.acquired_at`,
		l.WorkspaceID, l.Slot, l.ID, l.Holder, l.Purpose, store.CleanText(l.Ref), now, l.ExpiresAt.UnixMilli())
	if err != nil {
		return l, false, fmt.Errorf("acquire lease: %w", mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return l, false, mapErr(err)
	}
	return l, n == 1, nil
}

func (t *tx) ReleaseLeases(ctx context.Context, ids []string) error {
	for _, id := range ids {
		if _, err := t.q.ExecContext(ctx, `DELETE FROM leases WHERE id = ?`, id); err != nil {
			return fmt.Errorf("release lease: %w", mapErr(err))
		}
	}
	return nil
}

func (t *tx) CountLeases(ctx context.Context, workspaceID string, now time.Time) (int, error) {
	var n int
	err := t.q.QueryRowContext(ctx, `SELECT count(*) FROM leases WHERE workspace_id = ? AND expires_at > ?`, workspaceID, now.UnixMilli()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count leases: %w", mapErr(err))
	}
	return n, nil
}

// InflightCounts passes the ids as one JSON array so that the statement
// stays the same (and prepared) whatever their number.
func (s *Store) InflightCounts(ctx context.Context, ids []string, now time.Time) (map[string]int, error) {
	out := map[string]int{}
	if len(ids) == 0 {
		return out, nil
	}
	arr, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT workspace_id, count(*) FROM leases
		WHERE workspace_id IN (SELECT value FROM json_each(?)) AND expires_at > ? GROUP BY workspace_id`, string(arr), now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("count leases: %w", mapErr(err))
	}
	return scanCounts(rows, "count leases")
}

func (s *Store) RenewLeases(ctx context.Context, holder string, expiresAt time.Time) (int64, error) {
	return s.writeExec(ctx, "renew leases", `UPDATE leases SET expires_at = ? WHERE holder = ?`, expiresAt.UnixMilli(), holder)
}

func (s *Store) ReleaseHolder(ctx context.Context, holder string) (int64, error) {
	return s.writeExec(ctx, "release leases", `DELETE FROM leases WHERE holder = ?`, holder)
}

// NoSync is a no-op: with WAL and synchronous=NORMAL no commit syncs.
func (t *tx) NoSync(context.Context) error { return nil }

// scanCounts reads (id, count) rows into a map.
func scanCounts(rows *sql.Rows, what string) (map[string]int, error) {
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("%s: %w", what, mapErr(err))
		}
		out[id] = n
	}
	return out, mapErr(rows.Err())
}

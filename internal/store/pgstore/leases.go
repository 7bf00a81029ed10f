package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/jackc/pgx/v5"
)

// acquireLeaseSQL picks the lowest slot without a live lease and inserts
// there, taking over an expired row in place. Under READ COMMITTED two
// replicas may pick the same slot: the loser's insert waits on the winner's
// key, then finds a live lease and changes nothing (no row returned), and
// AcquireLease looks again.
const acquireLeaseSQL = `INSERT INTO leases (workspace_id, slot, id, holder, purpose, ref, acquired_at, expires_at)
	SELECT $1, s, $3, $4, $5, $6, $7, $8 FROM generate_series(0, $2 - 1) AS s
	WHERE NOT EXISTS (SELECT 1 FROM leases l WHERE l.workspace_id = $1 AND l.slot = s AND l.expires_at > $7)
	ORDER BY s LIMIT 1
	ON CONFLICT (workspace_id, slot) DO UPDATE SET id = EXCLUDED.id, holder = EXCLUDED.holder, purpose = EXCLUDED.purpose,
		ref = EXCLUDED.ref, acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at
	WHERE leases.expires_at <= EXCLUDED.acquired_at
	RETURNING slot`

func (t *tx) AcquireLease(ctx context.Context, l store.Lease, max int) (store.Lease, bool, error) {
	if max <= 0 {
		return l, false, nil
	}
	// Each attempt either succeeds or saw a slot taken by a commit that
	// happened after it started; max attempts cover every slot.
	for range max + 1 {
		err := t.tx.QueryRow(ctx, acquireLeaseSQL, l.WorkspaceID, max, l.ID, l.Holder, l.Purpose, store.CleanText(l.Ref),
			l.AcquiredAt, l.ExpiresAt).Scan(&l.Slot)
		if err == nil {
			return l, true, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return l, false, fmt.Errorf("acquire lease: %w", mapErr(err))
		}
		var free bool
		if err := t.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM generate_series(0, $2 - 1) AS s
			WHERE NOT EXISTS (SELECT 1 FROM leases l WHERE l.workspace_id = $1 AND l.slot = s AND l.expires_at > $3))`,
			l.WorkspaceID, max, l.AcquiredAt).Scan(&free); err != nil {
			return l, false, fmt.Errorf("acquire lease: %w", mapErr(err))
		}
		if !free {
			return l, false, nil
		}
	}
	return l, false, nil
}

func (t *tx) ReleaseLeases(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := t.tx.Exec(ctx, `DELETE FROM leases WHERE id = ANY($1)`, ids); err != nil {
		return fmt.Errorf("release leases: %w", mapErr(err))
	}
	return nil
}

func (t *tx) CountLeases(ctx context.Context, workspaceID string, now time.Time) (int, error) {
	var n int
	if err := t.tx.QueryRow(ctx, `SELECT count(*) FROM leases WHERE workspace_id = $1 AND expires_at > $2`, workspaceID, now).Scan(&n); err != nil {
		return 0, fmt.Errorf("count leases: %w", mapErr(err))
	}
	return n, nil
}

func (s *Store) InflightCounts(ctx context.Context, ids []string, now time.Time) (map[string]int, error) {
	out := map[string]int{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT workspace_id, count(*) FROM leases
		WHERE workspace_id = ANY($1) AND expires_at > $2 GROUP BY workspace_id`, ids, now)
	if err != nil {
		return nil, fmt.Errorf("count leases: %w", mapErr(err))
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("count leases: %w", mapErr(err))
		}
		out[id] = n
	}
	return out, mapErr(rows.Err())
}

func (s *Store) RenewLeases(ctx context.Context, holder string, expiresAt time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE leases SET expires_at = $1 WHERE holder = $2`, expiresAt, holder)
	if err != nil {
		return 0, fmt.Errorf("renew leases: %w", mapErr(err))
	}
	return tag.RowsAffected(), nil
}

func (s *Store) ReleaseHolder(ctx context.Context, holder string) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM leases WHERE holder = $1`, holder)
	if err != nil {
		return 0, fmt.Errorf("release leases: %w", mapErr(err))
	}
	return tag.RowsAffected(), nil
}

package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/jackc/pgx/v5"
)

// Acquiring never locks a row it does not end up holding, so concurrent
// acquisitions (on any number of replicas) wait on each other only for a
// key both try to insert, always in workspace order, and cannot deadlock.
// (An ON CONFLICT DO UPDATE … WHERE would lock the live row it declines to
// update until the transaction ends: that deadlocked under load.)
const (
	// insertLeaseSQL takes the lowest slot that has no row at all.
	insertLeaseSQL = `INSERT INTO leases (workspace_id, slot, id, holder, purpose, ref, acquired_at, expires_at)
	SELECT $1, s, $3, $4, $5, $6, $7, $8 FROM generate_series(0, $2 - 1) AS s
	WHERE NOT EXISTS (SELECT 1 FROM leases l WHERE l.workspace_id = $1 AND l.slot = s)
	ORDER BY s LIMIT 1
	ON CONFLICT (workspace_id, slot) DO NOTHING
	RETURNING slot`
	// takeOverLeaseSQL takes the lowest expired slot nobody else is
	// taking over right now.
	takeOverLeaseSQL = `UPDATE leases SET id = $3, holder = $4, purpose = $5, ref = $6, acquired_at = $7, expires_at = $8
	WHERE (workspace_id, slot) = (SELECT workspace_id, slot FROM leases
		WHERE workspace_id = $1 AND slot < $2 AND expires_at <= $7 ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED)
	AND expires_at <= $7
	RETURNING slot`
	// freeSlotSQL tells whether any slot is without a live lease.
	freeSlotSQL = `SELECT EXISTS (SELECT 1 FROM generate_series(0, $2 - 1) AS s
	WHERE NOT EXISTS (SELECT 1 FROM leases l WHERE l.workspace_id = $1 AND l.slot = s AND l.expires_at > $3))`
)

func (t *tx) AcquireLease(ctx context.Context, l store.Lease, max int) (store.Lease, bool, error) {
	if max <= 0 {
		return l, false, nil
	}
	// Each round either takes a slot or lost one to a commit that happened
	// after its statement began; max+1 rounds cover every slot.
	for range max + 1 {
		for _, q := range []string{insertLeaseSQL, takeOverLeaseSQL} {
			err := t.tx.QueryRow(ctx, q, l.WorkspaceID, max, l.ID, l.Holder, l.Purpose, store.CleanText(l.Ref),
				l.AcquiredAt, l.ExpiresAt).Scan(&l.Slot)
			if err == nil {
				return l, true, nil
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return l, false, fmt.Errorf("acquire lease: %w", mapErr(err))
			}
		}
		var free bool
		if err := t.tx.QueryRow(ctx, freeSlotSQL, l.WorkspaceID, max, l.AcquiredAt).Scan(&free); err != nil {
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
	return scanCounts(rows, "count leases")
}

func (s *Store) RenewLeases(ctx context.Context, holder string, expiresAt time.Time) (int64, error) {
	// SKIP LOCKED: a lease being released right now needs no renewal, and
	// waiting on it could deadlock with the releasing transaction.
	tag, err := s.pool.Exec(ctx, `UPDATE leases SET expires_at = $1 WHERE (workspace_id, slot) IN
		(SELECT workspace_id, slot FROM leases WHERE holder = $2 FOR UPDATE SKIP LOCKED)`, expiresAt, holder)
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

// NoSync sets synchronous_commit off for this transaction and, on the same
// round trip, reads the time and transaction id that Now would read.
func (t *tx) NoSync(ctx context.Context) error {
	var (
		n    time.Time
		txid string
	)
	if err := t.tx.QueryRow(ctx, `SELECT clock_timestamp(), pg_current_xact_id()::text FROM (SELECT set_config('synchronous_commit', 'off', true)) AS s`).Scan(&n, &txid); err != nil {
		return fmt.Errorf("synchronous_commit: %w", mapErr(err))
	}
	if t.now.IsZero() && t.s.opts.Now == nil {
		t.now = store.TruncateMillis(n)
		if err := t.setTxID(txid); err != nil {
			return err
		}
	}
	return nil
}

// scanCounts reads (id, count) rows into a map.
func scanCounts(rows pgx.Rows, what string) (map[string]int, error) {
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

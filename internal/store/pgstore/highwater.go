package pgstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/jackc/pgx/v5"
)

// Commit order and the high-water mark (SPEC §8.3).
//
// Event ids come from a sequence before commit, so id 11 can commit while id
// 10's transaction is still open. A reader that delivered 11 and moved on
// would never deliver 10. So the reader delivers only the contiguous prefix
// of ids it can see, and stops at a gap until the gap is known to be dead.
//
// Every writer takes its transaction id before its event id (AppendEvent).
// Hence, when a snapshot S shows an id h committed above a missing id g, the
// writer of g got its transaction id before S was taken. If it still runs,
// it is either listed in S's in-flight list (S.xip) or — because PostgreSQL
// derives S.xmax from the latest *completed* transaction, not the latest
// assigned one — it has an id at or above S.xmax without being listed. So
// the reader also takes a fresh transaction id U right after S: every id
// assigned before S is below U. The gap waits for S.xip and for the whole
// range [S.xmax, U) to complete; then g either became visible (deliver it)
// or never will (rolled back, or a sequence value lost in a crash): skip it.
// (Found by TestHighWaterMarkUnderConcurrentWriters: trusting S.xip alone
// skipped about one event in a hundred under eight concurrent writers.)
// A rolled-back id therefore delays delivery only until the transactions
// that were running alongside it end; it never stalls delivery for good.

// snapshot is a parsed pg_current_snapshot(): xmin:xmax:xip,…, plus next,
// a transaction id assigned after it was taken.
type snapshot struct {
	xmin, xmax uint64
	xip        []uint64
	next       uint64
}

func parseSnapshot(s string) (snapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return snapshot{}, fmt.Errorf("snapshot %q: want xmin:xmax:xip", s)
	}
	var sn snapshot
	var err error
	if sn.xmin, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return sn, fmt.Errorf("snapshot %q: %w", s, err)
	}
	if sn.xmax, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return sn, fmt.Errorf("snapshot %q: %w", s, err)
	}
	if parts[2] != "" {
		for _, x := range strings.Split(parts[2], ",") {
			v, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				return sn, fmt.Errorf("snapshot %q: %w", s, err)
			}
			sn.xip = append(sn.xip, v)
		}
	}
	return sn, nil
}

// done reports whether xid had completed when sn was taken.
func (sn snapshot) done(xid uint64) bool {
	return xid < sn.xmax && !slices.Contains(sn.xip, xid)
}

// gap is the first missing id the reader waits on, and the transactions that
// may have held it: the listed ones and the range [from, to).
type gap struct {
	id       int64
	waitFor  []uint64
	from, to uint64
}

// dead reports whether gap g can no longer be filled, as of snapshot sn. It
// starts tracking g if it is a new gap.
func (s *Store) gapDead(id int64, sn snapshot) bool {
	s.gapMu.Lock()
	defer s.gapMu.Unlock()
	if s.gap == nil || s.gap.id != id {
		s.gap = &gap{id: id, waitFor: slices.Clone(sn.xip), from: sn.xmax, to: sn.next}
	}
	for _, x := range s.gap.waitFor {
		if !sn.done(x) {
			return false
		}
	}
	// Every id in [from, to) has completed iff to ≤ xmax and none is listed.
	if s.gap.to > sn.xmax {
		return false
	}
	for _, x := range sn.xip {
		if x >= s.gap.from && x < s.gap.to {
			return false
		}
	}
	s.gap = nil
	return true
}

// readSafe reads up to limit events after afterID, and the snapshot they were
// read in, from one REPEATABLE READ transaction.
func (s *Store) readSafe(ctx context.Context, afterID int64, limit int) ([]store.Event, snapshot, error) {
	var (
		evs []store.Event
		sn  snapshot
	)
	// Not READ ONLY: the transaction takes an id (after its snapshot) as the
	// upper bound of ids assigned before the snapshot.
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		var raw, next string
		if err := tx.QueryRow(ctx, `SELECT pg_current_snapshot()::text`).Scan(&raw); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()::text`).Scan(&next); err != nil {
			return err
		}
		var err error
		if sn, err = parseSnapshot(raw); err != nil {
			return err
		}
		if sn.next, err = strconv.ParseUint(next, 10, 64); err != nil {
			return fmt.Errorf("transaction id %q: %w", next, err)
		}
		rows, err := tx.Query(ctx, `SELECT id, type, COALESCE(workspace_id::text, ''), audience, payload::text, actor, created_at, txid::text
			FROM events WHERE id > $1 ORDER BY id LIMIT $2`, afterID, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		evs, err = scanEvents(rows)
		return err
	})
	if err != nil {
		return nil, sn, fmt.Errorf("events after %d: %w", afterID, mapErr(err))
	}
	return evs, sn, nil
}

// EventsAfter returns committed events with id > afterID in id order, but
// only up to the high-water mark: it never returns an id above a gap that an
// in-flight transaction may still fill. Callers must ask again later (the
// relay reads on every wake-up and at least once per beat).
func (s *Store) EventsAfter(ctx context.Context, afterID int64, limit int) ([]store.Event, error) {
	if limit <= 0 {
		limit = 100
	}
	evs, sn, err := s.readSafe(ctx, afterID, limit)
	if err != nil {
		return nil, err
	}
	expected := afterID + 1
	out := evs[:0]
	for _, ev := range evs {
		if ev.ID != expected && !s.gapDead(expected, sn) {
			break
		}
		out = append(out, ev)
		expected = ev.ID + 1
	}
	return out, nil
}

// primeWindow bounds how far below the newest id Prime looks for gaps: a
// transaction that holds an event id while this many later ids commit is
// assumed finished.
const primeWindow = 1000

// LatestEventID returns the position a live reader may start after: the
// newest id, or — if ids are still missing among the newest primeWindow —
// the id just below the first missing one, so that those are delivered live
// if their transactions commit.
func (s *Store) LatestEventID(ctx context.Context) (int64, error) {
	var maxID int64
	if err := s.pool.QueryRow(ctx, `SELECT COALESCE(MAX(id), 0) FROM events`).Scan(&maxID); err != nil {
		return 0, fmt.Errorf("latest event id: %w", mapErr(err))
	}
	from := max(maxID-primeWindow, 0)
	evs, sn, err := s.readSafe(ctx, from, primeWindow+1)
	if err != nil {
		return 0, err
	}
	expected := from + 1
	for _, ev := range evs {
		if ev.ID != expected && !s.gapDead(expected, sn) {
			return expected - 1, nil
		}
		expected = ev.ID + 1
	}
	return max(expected-1, from), nil
}

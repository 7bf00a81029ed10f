// Package pgstore is the PostgreSQL back end, for several replicas sharing one
// database. It speaks SQL through a pgx connection pool.
//
// Now is database time (clock_timestamp()), so every replica judges leases and
// TTLs by the same clock. Migrations take a session advisory lock, so replicas
// that start together apply them once. It must never rely on in-memory state
// for correctness across replicas: row locks, conditional updates and unique
// constraints are the guards.
package pgstore

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/store/sqlmigrate"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrationLockKey is the advisory lock replicas take while migrating
// ("agentpl" in ASCII, to stay clear of other applications' keys).
const migrationLockKey int64 = 0x6167656e74706c

// Store is the PostgreSQL implementation of store.Store.
type Store struct {
	pool       *pgxpool.Pool
	opts       store.Options
	migrations []sqlmigrate.Migration
	// gap is the high-water mark's state (see highwater.go).
	gapMu sync.Mutex
	gap   *gap
}

var _ store.Store = (*Store)(nil)

// Open creates a pool for databaseURL (postgres://…). It does not migrate.
// A database that is down at start is not an error: the pool connects lazily,
// and Ready reports the outage until it returns.
func Open(ctx context.Context, databaseURL string, opts store.Options) (*Store, error) {
	ms, err := sqlmigrate.Load(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > 5*time.Second {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	if cfg.MaxConns < 8 {
		cfg.MaxConns = 8
	}
	cfg.HealthCheckPeriod = 10 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres pool: %w", err)
	}
	return &Store{pool: pool, opts: opts, migrations: ms}, nil
}

// Pool exposes the pool to the relay (LISTEN needs a dedicated connection).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Dialect returns "postgres".
func (s *Store) Dialect() string { return "postgres" }

// Now returns database time, or the injected clock's.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	return now(ctx, s.opts, s.pool)
}

type queryer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func now(ctx context.Context, opts store.Options, q queryer) (time.Time, error) {
	if opts.Now != nil {
		return store.TruncateMillis(opts.Now()), nil
	}
	var t time.Time
	// clock_timestamp, not now(): now() is frozen at transaction start.
	if err := q.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("read database time: %w", mapErr(err))
	}
	return store.TruncateMillis(t), nil
}

// Migrate applies pending migrations while holding a session advisory lock.
// Each migration runs in its own transaction together with its version row.
func (s *Store) Migrate(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: connect: %w", mapErr(err))
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLockKey); err != nil {
		return fmt.Errorf("migrate: lock: %w", mapErr(err))
	}
	defer func() {
		// A fresh context: the lock must be released even if ctx was cancelled,
		// or the pooled connection would keep holding it.
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, migrationLockKey); err != nil {
			conn.Conn().Close(uctx) //nolint:errcheck // drop the session, and with it the lock
		}
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrate: %w", mapErr(err))
	}
	var current int
	if err := conn.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("migrate: read version: %w", mapErr(err))
	}
	if latest := sqlmigrate.Latest(s.migrations); current > latest {
		return fmt.Errorf("migrate: database is at version %d, newer than this binary's %d", current, latest)
	}
	for _, m := range s.migrations {
		if m.Version <= current {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate: %s: %w", m.Name, mapErr(err))
		}
	}
	return nil
}

// Ready checks that the database answers and the schema is current.
func (s *Store) Ready(ctx context.Context) error {
	var current int
	err := s.pool.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
			return store.ErrNotMigrated
		}
		return mapErr(err)
	}
	if latest := sqlmigrate.Latest(s.migrations); current < latest {
		return fmt.Errorf("%w: at version %d of %d", store.ErrNotMigrated, current, latest)
	}
	return nil
}

// InTx runs fn in a READ COMMITTED transaction.
func (s *Store) InTx(ctx context.Context, fn func(store.Tx) error) error {
	pgTx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", mapErr(err))
	}
	tx := &tx{s: s, tx: pgTx}
	committed := false
	defer func() {
		if !committed { // also on panic: never leave a pooled connection inside a transaction
			_ = pgTx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	committed = true
	if err := pgTx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", mapErr(err))
	}
	if tx.lastEventID > 0 && s.opts.OnCommit != nil {
		s.opts.OnCommit(tx.lastEventID)
	}
	return nil
}

type tx struct {
	s           *Store
	tx          pgx.Tx
	txid        uint64
	now         time.Time
	lastEventID int64
}

// Now reads database time once per transaction: a transaction lasts
// milliseconds, and every extra read is a round trip on the hot path.
func (t *tx) Now(ctx context.Context) (time.Time, error) {
	if t.now.IsZero() {
		if t.s.opts.Now != nil {
			t.now = store.TruncateMillis(t.s.opts.Now())
			return t.now, nil
		}
		// Nearly every transaction that reads the time writes, and most
		// append an event: take the transaction id on the same round trip.
		var (
			n    time.Time
			txid string
		)
		if err := t.tx.QueryRow(ctx, `SELECT clock_timestamp(), pg_current_xact_id()::text`).Scan(&n, &txid); err != nil {
			return time.Time{}, fmt.Errorf("read database time: %w", mapErr(err))
		}
		if err := t.setTxID(txid); err != nil {
			return time.Time{}, err
		}
		t.now = store.TruncateMillis(n)
	}
	return t.now, nil
}

// takeTxID reads the transaction id (assigning one).
func (t *tx) takeTxID(ctx context.Context) error {
	var s string
	if err := t.tx.QueryRow(ctx, `SELECT pg_current_xact_id()::text`).Scan(&s); err != nil {
		return mapErr(err)
	}
	return t.setTxID(s)
}

func (t *tx) setTxID(s string) error {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("transaction id %q: %w", s, err)
	}
	t.txid = v
	return nil
}

func (t *tx) AppendEvent(ctx context.Context, in store.EventInput) (store.Event, bool, error) {
	if err := in.Validate(); err != nil {
		return store.Event{}, false, err
	}
	payload := in.Payload
	if len(payload) == 0 {
		payload = json.RawMessage(`{}`)
	}
	// Now also takes the transaction id, before the event id: a reader
	// that sees a later id committed then knows that this transaction, which
	// may still commit a smaller id, is in its snapshot's in-flight list.
	now, err := t.Now(ctx)
	if err != nil {
		return store.Event{}, false, err
	}
	if t.txid == 0 {
		if err := t.takeTxID(ctx); err != nil {
			return store.Event{}, false, fmt.Errorf("append event %s: %w", in.Type, err)
		}
	}
	// INSERT … SELECT … WHERE NOT EXISTS draws an id only when a row is
	// produced: a dedupe hit must not burn a sequence value, because every
	// burned value is a gap the stream relay has to wait out.
	//
	// The NOTIFY that wakes every replica's relay rides on the same round
	// trip. It is transactional: sent at commit, never for a rollback. Only
	// the id travels (payloads are capped at 8000 bytes); readers read the
	// events table.
	var (
		id     int64
		notify string
	)
	err = t.tx.QueryRow(ctx, `WITH ins AS (INSERT INTO events (type, workspace_id, audience, payload, actor, dedupe_key, created_at, txid)
		SELECT $1, $2::uuid, $3, $4::jsonb, $5, $6, $7, $8::text::xid8
		WHERE $6::text IS NULL OR NOT EXISTS (SELECT 1 FROM events WHERE dedupe_key = $6)
		ON CONFLICT (dedupe_key) DO NOTHING
		RETURNING id)
		SELECT id, pg_notify($9, id::text)::text FROM ins`,
		in.Type, nullString(in.WorkspaceID), string(in.Audience), string(payload), in.Actor, nullString(in.DedupeKey), now,
		strconv.FormatUint(t.txid, 10), NotifyChannel,
	).Scan(&id, &notify)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Event{}, false, nil
	}
	if err != nil {
		return store.Event{}, false, fmt.Errorf("append event %s: %w", in.Type, mapErr(err))
	}
	t.lastEventID = id
	return store.Event{
		ID: id, Type: in.Type, WorkspaceID: in.WorkspaceID, Audience: in.Audience,
		Payload: payload, Actor: in.Actor, CreatedAt: now, TxID: t.txid,
	}, true, nil
}

func scanEvents(rows pgx.Rows) ([]store.Event, error) {
	var out []store.Event
	for rows.Next() {
		var (
			ev      store.Event
			aud     string
			payload string
			txid    string
		)
		if err := rows.Scan(&ev.ID, &ev.Type, &ev.WorkspaceID, &aud, &payload, &ev.Actor, &ev.CreatedAt, &txid); err != nil {
			return nil, fmt.Errorf("scan event: %w", mapErr(err))
		}
		ev.Audience = store.Audience(aud)
		ev.Payload = json.RawMessage(payload)
		ev.CreatedAt = ev.CreatedAt.UTC()
		ev.TxID, _ = strconv.ParseUint(txid, 10, 64)
		out = append(out, ev)
	}
	return out, mapErr(rows.Err())
}

// PruneEvents deletes at most batch events older than cutoff, skipping rows
// another replica is pruning at the same moment.
func (s *Store) PruneEvents(ctx context.Context, cutoff time.Time, batch int) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM events WHERE id IN (
		SELECT id FROM events WHERE created_at < $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)`, cutoff, batch)
	if err != nil {
		return 0, fmt.Errorf("prune events: %w", mapErr(err))
	}
	return tag.RowsAffected(), nil
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// mapErr turns pgx errors into the store's sentinels: unique violations are
// ErrConflict; connection failures and server shutdowns are ErrUnavailable.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505": // unique_violation
			return fmt.Errorf("%w: %v", store.ErrConflict, err)
		case pgErr.Code == "22P02", pgErr.Code == "22P05", pgErr.Code == "22021": // bad text/JSON/character
			return fmt.Errorf("%w: %v", store.ErrInvalid, err)
		case pgErr.Code[:2] == "08", // connection exception
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03", // shutdown, cannot connect now
			pgErr.Code == "53300": // too many connections
			return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
		}
		return err
	}
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) || errors.As(err, &netErr) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err) || errors.Is(err, pgx.ErrTxClosed) {
		return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
	}
	// Anything else from the wire (closed pool, broken pipe) is also an
	// outage from the caller's point of view.
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
	}
	return err
}

// Package sqlitestore is the embedded default back end: one SQLite file in the
// data directory, opened through the pure-Go modernc.org/sqlite driver.
//
// Writes go through a one-connection pool whose transactions begin IMMEDIATE,
// so read-then-write transactions never fail with "database is locked";
// reads use a separate pool so that they never queue behind a writer (WAL).
// It must never be used by two processes that both expect to be the only
// writer without the busy timeout: SQLite serializes them, it does not merge.
package sqlitestore

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/store/sqlmigrate"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// FileName is the database file created inside the data directory.
const FileName = "agentplane.db"

// BusyTimeout is how long a connection waits for SQLite's write lock.
const BusyTimeout = 5 * time.Second

// Store is the SQLite implementation of store.Store.
type Store struct {
	path       string
	write      *sql.DB
	read       *sql.DB
	opts       store.Options
	migrations []sqlmigrate.Migration
	stmts      *stmtCache
	// r and w run queries through prepared statements of each pool.
	r, w cached
	// wlock admits one writer (transaction or write statement) at a time.
	wlock chan struct{}
}

// lockWrite waits for the writer slot or ctx.
func (s *Store) lockWrite(ctx context.Context) error {
	select {
	case s.wlock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting for the writer: %v", store.ErrUnavailable, ctx.Err())
	}
}

func (s *Store) unlockWrite() { <-s.wlock }

// writeExec runs one write statement outside a transaction, holding the
// writer slot, through the writer's prepared statements; it reports the rows
// affected. what names the operation in errors.
func (s *Store) writeExec(ctx context.Context, what, query string, args ...any) (int64, error) {
	if err := s.lockWrite(ctx); err != nil {
		return 0, err
	}
	defer s.unlockWrite()
	res, err := s.w.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, mapErr(err))
	}
	n, err := res.RowsAffected()
	return n, mapErr(err)
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database file in dataDir. It does not
// migrate; call Migrate.
func Open(ctx context.Context, dataDir string, opts store.Options) (*Store, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir %q: %w", dataDir, err)
	}
	return OpenFile(ctx, filepath.Join(dataDir, FileName), opts)
}

// OpenFile opens the database at path.
func OpenFile(ctx context.Context, path string, opts store.Options) (*Store, error) {
	ms, err := sqlmigrate.Load(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	write, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		return nil, fmt.Errorf("open sqlite %q: %w", path, err)
	}
	// One writer at a time (the wlock semaphore): SQLite has one write lock
	// per file anyway, and queueing here is cheaper than spinning on
	// SQLITE_BUSY. The second connection only ever prepares statements, so
	// that a transaction holding the first can prepare a new one.
	write.SetMaxOpenConns(2)
	write.SetMaxIdleConns(2)
	write.SetConnMaxIdleTime(0)
	read, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite %q: %w", path, err)
	}
	read.SetMaxOpenConns(8)
	read.SetMaxIdleConns(8)
	s := &Store{path: path, write: write, read: read, opts: opts, migrations: ms, stmts: newStmtCache(), wlock: make(chan struct{}, 1)}
	s.r = cached{cache: s.stmts, db: read}
	s.w = cached{cache: s.stmts, db: write}
	if err := s.write.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open sqlite %q: %w", path, mapErr(err))
	}
	return s, nil
}

func dsn(path string, writer bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", BusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	if writer {
		q.Set("_txlock", "immediate")
	} else {
		q.Add("_pragma", "query_only(1)")
	}
	return "file:" + path + "?" + q.Encode()
}

// Path returns the database file path.
func (s *Store) Path() string { return s.path }

// Dialect returns "sqlite".
func (s *Store) Dialect() string { return "sqlite" }

// Pragmas reads back the settings that matter, from both pools, so that the
// server can log what SQLite actually applied (a misspelt DSN option is
// otherwise silently ignored).
func (s *Store) Pragmas(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range []struct {
		db   *sql.DB
		name string
	}{{s.write, "journal_mode"}, {s.write, "busy_timeout"}, {s.write, "synchronous"}, {s.write, "foreign_keys"}, {s.read, "query_only"}} {
		var v string
		if err := p.db.QueryRowContext(ctx, "PRAGMA "+p.name).Scan(&v); err != nil {
			return nil, fmt.Errorf("read pragma %s: %w", p.name, mapErr(err))
		}
		out[p.name] = v
	}
	return out, nil
}

// Now returns the injected clock's time or the process clock: the database is
// embedded, so its time is this machine's time.
func (s *Store) Now(context.Context) (time.Time, error) {
	if s.opts.Now != nil {
		return store.TruncateMillis(s.opts.Now()), nil
	}
	return store.TruncateMillis(time.Now()), nil
}

// Migrate applies pending migrations inside one IMMEDIATE transaction: a second
// process waits for the write lock, then finds the version already current.
func (s *Store) Migrate(ctx context.Context) error {
	if err := s.lockWrite(ctx); err != nil {
		return err
	}
	defer s.unlockWrite()
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: begin: %w", mapErr(err))
	}
	defer tx.Rollback() //nolint:errcheck // rollback after commit is a no-op
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", mapErr(err))
	}
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("migrate: read version: %w", mapErr(err))
	}
	if latest := sqlmigrate.Latest(s.migrations); current > latest {
		return fmt.Errorf("migrate: database is at version %d, newer than this binary's %d", current, latest)
	}
	now, _ := s.Now(ctx)
	for _, m := range s.migrations {
		if m.Version <= current {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("migrate: %s: %w", m.Name, mapErr(err))
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.Version, m.Name, now.UnixMilli()); err != nil {
			return fmt.Errorf("migrate: record %s: %w", m.Name, mapErr(err))
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: commit: %w", mapErr(err))
	}
	return nil
}

// Ready checks that the schema is current and that the write lock can be
// taken: a file locked by another process makes this replica useless even
// though reads still work.
func (s *Store) Ready(ctx context.Context) error {
	var current int
	err := s.read.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return store.ErrNotMigrated
		}
		return mapErr(err)
	}
	if latest := sqlmigrate.Latest(s.migrations); current < latest {
		return fmt.Errorf("%w: at version %d of %d", store.ErrNotMigrated, current, latest)
	}
	if err := s.lockWrite(ctx); err != nil {
		return err
	}
	defer s.unlockWrite()
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return mapErr(err)
	}
	return mapErr(tx.Rollback())
}

// InTx runs fn in an IMMEDIATE transaction.
func (s *Store) InTx(ctx context.Context, fn func(store.Tx) error) error {
	if err := s.lockWrite(ctx); err != nil {
		return err
	}
	locked := true
	unlock := func() {
		if locked {
			locked = false
			s.unlockWrite()
		}
	}
	defer unlock()
	sqlTx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", mapErr(err))
	}
	tx := &tx{s: s, tx: sqlTx, q: cached{cache: s.stmts, db: s.write, tx: sqlTx}}
	committed := false
	defer func() {
		if !committed { // also on panic: release the writer connection
			_ = sqlTx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	committed = true
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", mapErr(err))
	}
	unlock()
	if tx.lastEventID > 0 && s.opts.OnCommit != nil {
		s.opts.OnCommit(tx.lastEventID)
	}
	return nil
}

type tx struct {
	s           *Store
	tx          *sql.Tx
	q           cached
	lastEventID int64
}

func (t *tx) Now(ctx context.Context) (time.Time, error) { return t.s.Now(ctx) }

func (t *tx) AppendEvent(ctx context.Context, in store.EventInput) (store.Event, bool, error) {
	if err := in.Validate(); err != nil {
		return store.Event{}, false, err
	}
	now, err := t.s.Now(ctx)
	if err != nil {
		return store.Event{}, false, err
	}
	payload := in.Payload
	if len(payload) == 0 {
		payload = json.RawMessage(`{}`)
	}
	var id int64
	err = t.q.QueryRowContext(ctx, `INSERT INTO events (type, workspace_id, audience, payload, actor, dedupe_key, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (dedupe_key) DO NOTHING
		RETURNING id`,
		in.Type, nullString(in.WorkspaceID), string(in.Audience), string(payload), in.Actor, nullString(in.DedupeKey), now.UnixMilli(),
	).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Event{}, false, nil
	}
	if err != nil {
		return store.Event{}, false, fmt.Errorf("append event %s: %w", in.Type, mapErr(err))
	}
	t.lastEventID = id
	return store.Event{
		ID: id, Type: in.Type, WorkspaceID: in.WorkspaceID, Audience: in.Audience,
		Payload: payload, Actor: in.Actor, CreatedAt: now,
	}, true, nil
}

// EventsAfter reads from the read pool. SQLite commits writers one at a time in
// id order, so ids are visible in order and no high-water mark is needed.
func (s *Store) EventsAfter(ctx context.Context, afterID int64, limit int) ([]store.Event, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id, type, COALESCE(workspace_id, ''), audience, payload, actor, created_at
		FROM events WHERE id > ? ORDER BY id LIMIT ?`, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("events after %d: %w", afterID, mapErr(err))
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
			return nil, fmt.Errorf("scan event: %w", mapErr(err))
		}
		ev.Audience = store.Audience(aud)
		ev.Payload = json.RawMessage(payload)
		ev.CreatedAt = time.UnixMilli(ms).UTC()
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("events after %d: %w", afterID, mapErr(err))
	}
	return out, nil
}

// LatestEventID returns the highest committed event id.
func (s *Store) LatestEventID(ctx context.Context) (int64, error) {
	var id int64
	if err := s.read.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM events`).Scan(&id); err != nil {
		return 0, fmt.Errorf("latest event id: %w", mapErr(err))
	}
	return id, nil
}

// PruneEvents deletes at most batch events created before cutoff and returns
// how many it deleted. Small batches keep the write lock short.
func (s *Store) PruneEvents(ctx context.Context, cutoff time.Time, batch int) (int64, error) {
	return s.writeExec(ctx, "prune events", `DELETE FROM events WHERE id IN (
		SELECT id FROM events WHERE created_at < ? ORDER BY id LIMIT ?)`, cutoff.UnixMilli(), batch)
}

// Close closes both pools.
func (s *Store) Close() error {
	s.stmts.close()
	return errors.Join(s.write.Close(), s.read.Close())
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// mapErr turns driver errors into the store's sentinels: a unique violation is
// ErrConflict; a busy or locked database, or an I/O failure, is ErrUnavailable.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_CONSTRAINT:
			if se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY {
				return fmt.Errorf("%w: %v", store.ErrConflict, err)
			}
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_FULL, sqlite3.SQLITE_PROTOCOL:
			return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
		}
	}
	return err
}

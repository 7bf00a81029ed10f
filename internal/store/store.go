package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Back ends wrap them with %w; callers test with errors.Is and
// the HTTP layer maps them to status codes in one place.
var (
	// ErrNotFound means the addressed row does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means the write collides with existing state (a duplicate
	// name, a state that changed underneath).
	ErrConflict = errors.New("conflict")
	// ErrUnavailable means the database could not be reached or answered with
	// a transient failure; the request may succeed later.
	ErrUnavailable = errors.New("store unavailable")
	// ErrNotMigrated means the schema is older than this binary expects.
	ErrNotMigrated = errors.New("schema not migrated")
)

// Store is implemented by sqlitestore and pgstore.
type Store interface {
	// Dialect names the back end: "sqlite" or "postgres".
	Dialect() string
	// Now is the instant all replicas agree on: database time, or the fake
	// clock the store was opened with. Truncated to milliseconds.
	Now(ctx context.Context) (time.Time, error)
	// Migrate applies pending embedded migrations. It is safe to call from
	// several processes at once: one applies, the others wait and find nothing
	// left to do.
	Migrate(ctx context.Context) error
	// Ready reports whether the database is reachable and fully migrated.
	Ready(ctx context.Context) error
	// InTx runs fn in one write transaction and commits when fn returns nil.
	// Events appended through tx are published (subscribers are woken) only
	// after the commit succeeded.
	InTx(ctx context.Context, fn func(tx Tx) error) error
	// EventsAfter returns persisted events with id > afterID in id order, at
	// most limit of them.
	EventsAfter(ctx context.Context, afterID int64, limit int) ([]Event, error)
	// LatestEventID returns the highest persisted event id, 0 when none.
	LatestEventID(ctx context.Context) (int64, error)
	// PruneEvents deletes at most batch events created before cutoff and
	// returns how many it deleted (retention, SPEC §8.3). Ids are never reused.
	PruneEvents(ctx context.Context, cutoff time.Time, batch int) (int64, error)
	// Close releases the connection pools.
	Close() error
}

// Tx is the write side available inside InTx. Domain writes added by later
// features join this interface so that state and its event commit together.
type Tx interface {
	// Now is Store.Now, read inside the transaction.
	Now(ctx context.Context) (time.Time, error)
	// AppendEvent writes an event in the transaction (the outbox). When
	// in.DedupeKey is set and an event with that key already exists, nothing is
	// written and inserted is false: a transition observed by two replicas
	// yields one event.
	AppendEvent(ctx context.Context, in EventInput) (ev Event, inserted bool, err error)
}

// CommitHook is called after a transaction that appended events commits, with
// the highest event id it wrote. The event relay uses it to wake readers.
type CommitHook func(lastEventID int64)

// Options configure a back end.
type Options struct {
	// Now overrides database time (tests pass a fake clock's Now). Nil means
	// database time.
	Now func() time.Time
	// OnCommit is called after a commit that appended events. May be nil.
	OnCommit CommitHook
}

// TruncateMillis drops sub-millisecond precision: every instant the store keeps
// has millisecond precision on both back ends, so values round-trip exactly.
func TruncateMillis(t time.Time) time.Time {
	return t.Truncate(time.Millisecond).UTC()
}

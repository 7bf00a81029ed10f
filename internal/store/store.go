package store

import (
	"context"
	"errors"
	"strings"
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
	// ErrInvalid means the database refused a value (e.g. a character it
	// cannot store); callers should have sanitized it.
	ErrInvalid = errors.New("invalid value")
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
	// most limit of them, and never beyond the high-water mark: an id that a
	// transaction still in flight may fill stops the list until it commits or
	// is known dead (PostgreSQL; SQLite commits in id order). A live reader
	// uses it; it may return fewer events than exist.
	EventsAfter(ctx context.Context, afterID int64, limit int) ([]Event, error)
	// LatestEventID returns where a live reader may start: the newest id
	// below which no id can still commit (0 when none).
	LatestEventID(ctx context.Context) (int64, error)
	// PruneEvents deletes at most batch events created before cutoff and
	// returns how many it deleted (retention, SPEC §8.3). Ids are never reused.
	PruneEvents(ctx context.Context, cutoff time.Time, batch int) (int64, error)
	// Close releases the connection pools.
	Close() error

	// GetWorkspace returns one workspace (removed ones included).
	GetWorkspace(ctx context.Context, id string) (Workspace, error)
	// ListWorkspaces pages through workspaces in id order.
	ListWorkspaces(ctx context.Context, f WorkspaceFilter) ([]Workspace, error)
	// Hierarchy returns every non-removed workspace's parent link and the
	// hierarchy version it was read at.
	Hierarchy(ctx context.Context) ([]HierarchyNode, int64, error)
	// HierarchyVersion is bumped by every change of parent links or removal;
	// caches compare it per request to stay correct across replicas.
	HierarchyVersion(ctx context.Context) (int64, error)
	// ExpiredHeartbeats returns online or degraded workspaces whose last
	// heartbeat is before cutoff (at most limit).
	ExpiredHeartbeats(ctx context.Context, cutoff time.Time, limit int) ([]Workspace, error)
	// OldestHeartbeat returns the oldest last heartbeat among online and
	// degraded workspaces, zero when there are none.
	OldestHeartbeat(ctx context.Context) (time.Time, error)
	// ProbeTargets pages through online and degraded workspaces with a URL.
	ProbeTargets(ctx context.Context, afterID string, limit int) ([]Workspace, error)

	// TokenByHash finds a token by the SHA-256 of its value.
	TokenByHash(ctx context.Context, hash []byte) (TokenLookup, error)
	// ListTokens pages through tokens in id order.
	ListTokens(ctx context.Context, f TokenFilter) ([]Token, error)
	// TouchToken sets last_used_at to now unless it was set after notBefore,
	// so a busy token is written at most once per interval.
	TouchToken(ctx context.Context, id string, now, notBefore time.Time) error
	// SessionByHash finds a session by the SHA-256 of its cookie value.
	SessionByHash(ctx context.Context, hash []byte) (SessionLookup, error)
	// ExtendSession slides a session's expiry.
	ExtendSession(ctx context.Context, id string, expiresAt, lastSeen time.Time) error
	// DeleteSession removes a session (logout); a missing one is not an error.
	DeleteSession(ctx context.Context, hash []byte) error

	// ListActivity pages through a workspace's activity, newest first.
	ListActivity(ctx context.Context, f ActivityFilter) ([]Activity, error)
	// ListEvents returns persisted events after f.AfterID in id order.
	ListEvents(ctx context.Context, f EventFilter) ([]Event, error)
	// ListSecurityEvents pages through security events, newest first.
	ListSecurityEvents(ctx context.Context, f SecurityEventFilter) ([]SecurityEvent, error)
	// ConsumeTicket deletes and returns the ticket with this hash if it has
	// not expired at now; ErrNotFound otherwise (unknown, used or expired).
	ConsumeTicket(ctx context.Context, hash []byte, now time.Time) (Ticket, error)
	// PruneExpired deletes at most batch canvas sessions, stream tickets and
	// capacity leases that expired before now, and reports how many rows went.
	PruneExpired(ctx context.Context, now time.Time, batch int) (int64, error)
	// PruneActivity deletes at most batch activity rows created before cutoff.
	PruneActivity(ctx context.Context, cutoff time.Time, batch int) (int64, error)

	// InflightCounts counts the live (unexpired at now) capacity leases of
	// each of the given workspaces; workspaces without one are absent.
	InflightCounts(ctx context.Context, workspaceIDs []string, now time.Time) (map[string]int, error)
	// RenewLeases moves the expiry of every lease of holder to expiresAt and
	// reports how many there were.
	RenewLeases(ctx context.Context, holder string, expiresAt time.Time) (int64, error)
	// ReleaseHolder deletes every lease of holder (graceful shutdown).
	ReleaseHolder(ctx context.Context, holder string) (int64, error)

	// GetSchedule reads a schedule (deleted ones too); ErrNotFound if none.
	GetSchedule(ctx context.Context, id string) (Schedule, error)
	// ListSchedules lists a workspace's live schedules in creation order.
	ListSchedules(ctx context.Context, workspaceID string, limit int) ([]Schedule, error)
	// NextDue is the earliest next_run_at of an enabled live schedule; ok is
	// false when none is due ever.
	NextDue(ctx context.Context) (t time.Time, ok bool, err error)
	// GetRun reads one history row; ErrNotFound if none.
	GetRun(ctx context.Context, id string) (ScheduleRun, error)
	// ListRuns pages a schedule's history newest first.
	ListRuns(ctx context.Context, f RunFilter) ([]ScheduleRun, error)
	// RenewRunLeases moves the lease expiry of holder's pending and running
	// runs among ids (the runs this replica is actually working on) to
	// expiresAt. A run whose outcome could not be written is not among them,
	// so its lease lapses and another replica's sweep settles it.
	RenewRunLeases(ctx context.Context, holder string, ids []string, expiresAt time.Time) (int64, error)
	// ExpiredRuns lists pending or running runs whose lease expired at now.
	ExpiredRuns(ctx context.Context, now time.Time, limit int) ([]ScheduleRun, error)
	// SchedulerStats summarises the scheduler's state at now.
	SchedulerStats(ctx context.Context, now time.Time) (SchedulerStats, error)
	// ListAllSchedules pages every live schedule by id (admin health view).
	ListAllSchedules(ctx context.Context, afterID string, limit int) ([]Schedule, error)
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

	// GetWorkspace reads a workspace inside the transaction.
	GetWorkspace(ctx context.Context, id string) (Workspace, error)
	// InsertWorkspace creates a workspace (ErrConflict if the id exists).
	InsertWorkspace(ctx context.Context, w Workspace) error
	// UpdateWorkspace writes every mutable field of w if the stored version
	// still equals w.Version, and stores w.Version+1. It reports false (and
	// writes nothing) when another writer got there first.
	UpdateWorkspace(ctx context.Context, w Workspace) (bool, error)
	// Hierarchy is Store.Hierarchy read inside the transaction.
	Hierarchy(ctx context.Context) ([]HierarchyNode, int64, error)
	// BumpHierarchyVersion invalidates every replica's hierarchy cache.
	BumpHierarchyVersion(ctx context.Context) error
	// LockHierarchy serializes transactions that read the parent links and
	// then change them (create, re-parent, remove, cascades): the second waits
	// until the first commits, then reads its result.
	LockHierarchy(ctx context.Context) error

	// InsertToken stores a token. It reports false when a unique key (hash,
	// or the name of an active admin token) is already taken.
	InsertToken(ctx context.Context, t Token) (bool, error)
	// TokenByHash is Store.TokenByHash inside the transaction.
	TokenByHash(ctx context.Context, hash []byte) (TokenLookup, error)
	// RevokeToken revokes an active token of the given kind (and workspace,
	// for workspace tokens); ErrNotFound if there is none.
	RevokeToken(ctx context.Context, id, kind, workspaceID string, now time.Time) error
	// RevokeWorkspaceTokens revokes every active token of a workspace.
	RevokeWorkspaceTokens(ctx context.Context, workspaceID string, now time.Time) error
	// CountActiveAdminTokens counts admin tokens that are not revoked, locking
	// them until the transaction ends so that concurrent revocations cannot
	// both see "another one is left".
	CountActiveAdminTokens(ctx context.Context) (int, error)
	// InsertSession stores a canvas session.
	InsertSession(ctx context.Context, s Session) error
	// InsertSecurityEvent records a refused request and returns its id.
	InsertSecurityEvent(ctx context.Context, e SecurityEvent) (int64, error)
	// InsertActivity stores one activity row.
	InsertActivity(ctx context.Context, a Activity) error
	// InsertActivities stores several activity rows (on PostgreSQL in one
	// statement: group commits of the gateway write dozens at once).
	InsertActivities(ctx context.Context, as []Activity) error
	// InsertTicket stores a stream ticket (and drops expired ones).
	InsertTicket(ctx context.Context, t Ticket) error

	// AcquireLease takes the lowest of the workspace's max slots that is free
	// or whose lease expired at l.AcquiredAt, storing l there. It reports
	// false (and writes nothing) when every slot holds a live lease. Two
	// transactions never both get the same slot: the (workspace, slot) key
	// is the last guard.
	AcquireLease(ctx context.Context, l Lease, max int) (Lease, bool, error)
	// ReleaseLeases deletes the leases with these ids (ids that are gone or
	// were taken over by another holder are ignored).
	ReleaseLeases(ctx context.Context, ids []string) error
	// NoSync lets this transaction's commit return before its changes reach
	// disk (PostgreSQL synchronous_commit off; a no-op on SQLite, whose WAL
	// commits do not sync anyway). Other sessions see the commit at once; a
	// database crash may lose it. Only for state that may be lost that way:
	// capacity leases, which a crash frees anyway.
	NoSync(ctx context.Context) error
	// InsertSchedule stores a new schedule; ErrConflict when the workspace
	// has a live schedule of that name.
	InsertSchedule(ctx context.Context, s Schedule) error
	// LockSchedule reads a schedule and locks its row until the
	// transaction ends (PostgreSQL; SQLite's writer lock already excludes).
	LockSchedule(ctx context.Context, id string) (Schedule, error)
	// UpdateSchedule writes every mutable field of s; ErrConflict when the
	// new name is taken.
	UpdateSchedule(ctx context.Context, s Schedule) error
	// ClaimDueSchedules locks up to limit enabled live schedules due at now,
	// earliest first, skipping rows another transaction holds.
	ClaimDueSchedules(ctx context.Context, now time.Time, limit int) ([]Schedule, error)
	// InsertRun stores a history row. It reports false (and writes nothing)
	// when the slot of a schedule or catchup row already has one.
	InsertRun(ctx context.Context, r ScheduleRun) (bool, error)
	// UpdateRun writes every mutable field of r.
	UpdateRun(ctx context.Context, r ScheduleRun) error
	// LockRun reads a run and locks its row until the transaction ends.
	LockRun(ctx context.Context, id string) (ScheduleRun, error)
	// ActiveRuns lists a schedule's pending and running runs.
	ActiveRuns(ctx context.Context, scheduleID string) ([]ScheduleRun, error)
	// ActiveRunCounts counts the pending and running runs of each of the
	// schedules (absent: none), in one query for a whole claim batch.
	ActiveRunCounts(ctx context.Context, scheduleIDs []string) (map[string]int, error)
	// PruneRuns deletes a schedule's oldest finished history rows beyond keep.
	PruneRuns(ctx context.Context, scheduleID string, keep int) (int64, error)
	// CountLeases counts a workspace's leases that are live at now.
	CountLeases(ctx context.Context, workspaceID string, now time.Time) (int, error)
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

// CleanText makes a string storable on every back end: invalid UTF-8 and NUL
// (which PostgreSQL text and jsonb refuse) become U+FFFD. Domain code cleans
// text that comes from outside before writing it.
func CleanText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

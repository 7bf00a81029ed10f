package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/agentplane/agentplane/internal/clock"
	"github.com/agentplane/agentplane/internal/groupcommit"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/supervise"
	"github.com/google/uuid"
)

// Lease timing (SPEC §6.4, shared by gateway calls and cron runs).
const (
	LeaseTTL   = 30 * time.Second
	LeaseRenew = 10 * time.Second
	// pollBusy is how often a waiting caller looks again for a slot freed on
	// another replica (local releases wake it at once).
	pollBusy = 250 * time.Millisecond
	// commitTimeout bounds one group commit.
	commitTimeout = 10 * time.Second
)

// ErrBusy means every max_concurrent_tasks slot of the workspace held a live
// lease for the whole wait.
var ErrBusy = errors.New("workspace busy: every max_concurrent_tasks slot is in use")

// Capacity hands out the stored capacity leases of SPEC §7.3. Its writes —
// acquisitions, releases and the call records that go with them — are
// group-committed: whoever arrives while a commit runs joins the next one,
// so 64 concurrent callers cost a handful of transactions, not 128.
type Capacity struct {
	st     store.Store
	clk    clock.Clock
	log    *slog.Logger
	holder string

	// gc group-commits in lanes; a workspace's ops always go to the same
	// lane, so this replica's transactions never wait on each other for one
	// workspace's slots.
	gc *groupcommit.Committer[*op]

	mu      sync.Mutex
	waiters map[string][]*waiter // per workspace, oldest first
	held    int
	orphans []string // leases whose release failed; retried by RunRenewal
}

// NewCapacity returns a lease manager whose leases are held in the name of
// holder (a per-process replica id; empty picks a fresh one).
func NewCapacity(st store.Store, clk clock.Clock, log *slog.Logger, holder string) *Capacity {
	if holder == "" {
		holder = uuid.NewString()
	}
	// SQLite has one writer: a second lane would only queue behind the
	// first. PostgreSQL commits in parallel, and overlapping the WAL flushes
	// of a few transactions is what lets 64 callers through.
	n := 1
	if st.Dialect() == "postgres" {
		n = 4
	}
	c := &Capacity{st: st, clk: clk, log: log, holder: holder, waiters: map[string][]*waiter{}}
	c.gc = groupcommit.New(n, c.commit)
	return c
}

// Holder is the replica id leases are stored under.
func (c *Capacity) Holder() string { return c.holder }

// Held is how many leases this replica holds now.
func (c *Capacity) Held() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held
}

// op is one participant in a group commit.
type op struct {
	acquire *store.Lease // to acquire (nil: none)
	max     int
	release []string // lease ids
	wsWake  []string // workspaces whose waiters a release frees
	orphan  bool     // release of leases already uncounted in held
	write   func(ctx context.Context, tx store.Tx, now time.Time) error
	// records are activity rows written in one statement with the rest of
	// the batch's; CreatedAt is set to the commit's store time.
	records []store.Activity
	events  []store.EventInput

	// results
	granted store.Lease
	ok      bool
	err     error
}

type waiter struct {
	wake chan struct{}
}

// submit adds o to the next group commit of ws's lane and returns once it
// committed (or failed).
func (c *Capacity) submit(ws string, o *op) { c.gc.Do(ws, o) }

// commit runs one batch in one transaction. If that fails, each op is tried
// on its own so that one bad record cannot fail its neighbours.
func (c *Capacity) commit(batch []*op) {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	err := c.run(ctx, batch)
	if err != nil && len(batch) > 1 {
		for _, o := range batch {
			o.err = c.run(ctx, []*op{o})
		}
	} else {
		for _, o := range batch {
			o.err = err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range batch {
		if o.err != nil {
			o.ok = false
			continue
		}
		if o.ok {
			c.held++
		}
		if !o.orphan {
			c.held -= len(o.release)
		}
		for _, ws := range o.wsWake {
			c.wakeLocked(ws)
		}
	}
}

// run is one transaction: releases first (so a slot freed and wanted in the
// same batch changes hands at once), then records, then acquisitions sorted
// by workspace (a fixed lock order across replicas).
func (c *Capacity) run(ctx context.Context, batch []*op) error {
	var acq []*op
	for _, o := range batch {
		o.ok = false
		if o.acquire != nil {
			acq = append(acq, o)
		}
	}
	sort.SliceStable(acq, func(i, j int) bool { return acq[i].acquire.WorkspaceID < acq[j].acquire.WorkspaceID })
	records := false
	for _, o := range batch {
		records = records || o.write != nil || len(o.records) > 0 || len(o.events) > 0
	}
	return c.st.InTx(ctx, func(tx store.Tx) error {
		if !records {
			// Only leases: a database crash frees them anyway, so the
			// commit need not wait for the disk.
			if err := tx.NoSync(ctx); err != nil {
				return err
			}
		}
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		var (
			release []string
			records []store.Activity
		)
		for _, o := range batch {
			release = append(release, o.release...)
			for _, a := range o.records {
				a.CreatedAt = now
				records = append(records, a)
			}
		}
		if err := tx.ReleaseLeases(ctx, release); err != nil {
			return err
		}
		if err := tx.InsertActivities(ctx, records); err != nil {
			return err
		}
		for _, o := range batch {
			for _, ev := range o.events {
				if _, _, err := tx.AppendEvent(ctx, ev); err != nil {
					return err
				}
			}
			if o.write != nil {
				if err := o.write(ctx, tx, now); err != nil {
					return err
				}
			}
		}
		for _, o := range acq {
			l := *o.acquire
			l.AcquiredAt, l.ExpiresAt = now, now.Add(LeaseTTL)
			if o.granted, o.ok, err = tx.AcquireLease(ctx, l, o.max); err != nil {
				return err
			}
		}
		return nil
	})
}

func (c *Capacity) wakeLocked(ws string) {
	q := c.waiters[ws]
	if len(q) == 0 {
		return
	}
	close(q[0].wake)
	c.waiters[ws] = q[1:]
	if len(c.waiters[ws]) == 0 {
		delete(c.waiters, ws)
	}
}

func (c *Capacity) dropWaiter(ws string, w *waiter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.waiters[ws]
	for i, x := range q {
		if x == w {
			c.waiters[ws] = append(q[:i:i], q[i+1:]...)
			break
		}
	}
	if len(c.waiters[ws]) == 0 {
		delete(c.waiters, ws)
	}
}

// Acquire takes a lease on one of the workspace's max slots, waiting up to
// wait for one to free (woken at once by a release on this replica, and
// looking again every 250 ms for releases and expiries elsewhere). It
// returns ErrBusy when the wait ends without a slot, ctx's error when the
// caller went away, and a store error (ErrUnavailable …) when the store
// could not be asked.
func (c *Capacity) Acquire(ctx context.Context, workspaceID string, max int, purpose, ref string, wait time.Duration) (store.Lease, error) {
	var deadline clock.Timer
	for first := true; ; first = false {
		o := &op{max: max, acquire: &store.Lease{ID: uuid.NewString(), WorkspaceID: workspaceID, Holder: c.holder, Purpose: purpose, Ref: ref}}
		c.submit(workspaceID, o)
		if o.err != nil {
			return store.Lease{}, o.err
		}
		if o.ok {
			if ctx.Err() != nil { // granted after the caller left
				c.Release(context.WithoutCancel(ctx), o.granted, nil)
				return store.Lease{}, ctx.Err()
			}
			return o.granted, nil
		}
		if wait <= 0 {
			return store.Lease{}, ErrBusy
		}
		if first {
			deadline = c.clk.NewTimer(wait)
			defer deadline.Stop()
		}
		w := &waiter{wake: make(chan struct{})}
		c.mu.Lock()
		c.waiters[workspaceID] = append(c.waiters[workspaceID], w)
		c.mu.Unlock()
		poll := c.clk.NewTimer(pollBusy)
		select {
		case <-w.wake:
		case <-poll.C():
		case <-deadline.C():
			poll.Stop()
			c.dropWaiter(workspaceID, w)
			return store.Lease{}, ErrBusy
		case <-ctx.Done():
			poll.Stop()
			c.dropWaiter(workspaceID, w)
			return store.Lease{}, ctx.Err()
		}
		poll.Stop()
		c.dropWaiter(workspaceID, w)
	}
}

// Release frees the lease and, in the same transaction, runs write (the
// call's record; may be nil). It returns write's error, or the store's.
func (c *Capacity) Release(ctx context.Context, l store.Lease, write func(ctx context.Context, tx store.Tx, now time.Time) error) error {
	o := &op{write: write}
	if l.ID != "" {
		o.release = []string{l.ID}
		o.wsWake = []string{l.WorkspaceID}
	}
	c.submit(l.WorkspaceID, o)
	if o.err != nil && l.ID != "" {
		c.releaseAlone(l)
	}
	return o.err
}

// Finish frees the lease (if any) and stores the call's activity row and
// events in the same group commit.
func (c *Capacity) Finish(ctx context.Context, l store.Lease, wsID string, a store.Activity, events []store.EventInput) error {
	o := &op{records: []store.Activity{a}, events: events}
	if l.ID != "" {
		o.release = []string{l.ID}
		o.wsWake = []string{l.WorkspaceID}
	}
	c.submit(wsID, o)
	if o.err != nil && l.ID != "" {
		c.releaseAlone(l)
	}
	return o.err
}

func (c *Capacity) releaseAlone(l store.Lease) {
	r := &op{release: []string{l.ID}, wsWake: []string{l.WorkspaceID}}
	c.submit(l.WorkspaceID, r)
	if r.err != nil {
		// The store is down: the renewal loop retries the release (and must
		// not keep renewing the lease meanwhile).
		c.mu.Lock()
		c.orphans = append(c.orphans, l.ID)
		c.held--
		c.mu.Unlock()
	}
}

// Write commits write in the next group commit, without a lease.
func (c *Capacity) Write(ctx context.Context, write func(ctx context.Context, tx store.Tx, now time.Time) error) error {
	o := &op{write: write}
	c.submit("", o)
	return o.err
}

// RunRenewal keeps this replica's leases alive: every LeaseRenew it moves
// their expiry to store time + LeaseTTL, so a replica that dies stops
// renewing and its slots free within LeaseTTL. On shutdown it releases what
// is left. It runs under the supervisor and beats after each pass.
func (c *Capacity) RunRenewal(ctx context.Context, h *supervise.Heart) error {
	t := c.clk.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if n, err := c.st.ReleaseHolder(rctx, c.holder); err != nil {
				c.log.Warn("release leases at shutdown", "err", err)
			} else if n > 0 {
				c.log.Info("released leases at shutdown", "count", n)
			}
			return nil
		case <-t.C():
		}
		c.mu.Lock()
		orphans := c.orphans
		c.orphans = nil
		c.mu.Unlock()
		if len(orphans) > 0 {
			o := &op{release: orphans, orphan: true}
			c.submit("", o)
			if o.err != nil {
				c.mu.Lock()
				c.orphans = append(c.orphans, orphans...)
				c.mu.Unlock()
				return fmt.Errorf("release leases: %w", o.err)
			}
		}
		if c.Held() > 0 {
			now, err := c.st.Now(ctx)
			if err == nil {
				_, err = c.st.RenewLeases(ctx, c.holder, now.Add(LeaseTTL))
			}
			if err != nil {
				return fmt.Errorf("renew leases: %w", err)
			}
		}
		h.Beat()
		t.Reset(LeaseRenew)
	}
}

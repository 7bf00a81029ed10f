package activity

import (
	"context"
	"log/slog"
	"time"

	"github.com/agentplane/agentplane/internal/clock"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/supervise"
)

// Retention settings: small batches keep every delete's lock short; a full
// pass deletes at most maxBatches batches per table before it yields.
const (
	RetentionInterval = time.Minute
	retentionBatch    = 500
	maxBatches        = 200
)

// Retention prunes activity and events older than the retention period.
type Retention struct {
	store  store.Store
	clock  clock.Clock
	log    *slog.Logger
	keep   time.Duration
	pause  time.Duration
	failed int
}

// NewRetention returns the pruner keeping keep worth of history.
func NewRetention(st store.Store, c clock.Clock, log *slog.Logger, keep time.Duration) *Retention {
	return &Retention{store: st, clock: c, log: log, keep: keep, pause: 10 * time.Millisecond}
}

// Run prunes once per RetentionInterval. A store error is logged and the
// loop goes on (it beats only after a pass that completed, so an outage shows
// as a stale "retention" in /livez until the store is back). Run it under
// supervise as "retention".
func (r *Retention) Run(ctx context.Context, h *supervise.Heart) error {
	timer := r.clock.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C():
		}
		if _, err := r.Pass(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.failed++
			r.log.Warn("retention pass failed; retrying next interval", "err", err, "consecutive_failures", r.failed)
		} else {
			r.failed = 0
			h.Beat()
		}
		timer.Reset(RetentionInterval)
	}
}

// Pass deletes everything older than the cutoff (by store time) in batches
// and reports how many rows went.
func (r *Retention) Pass(ctx context.Context) (int64, error) {
	now, err := r.store.Now(ctx)
	if err != nil {
		return 0, err
	}
	cutoff := now.Add(-r.keep)
	var total int64
	for _, prune := range []func(context.Context, time.Time, int) (int64, error){r.store.PruneActivity, r.store.PruneEvents} {
		for i := 0; i < maxBatches; i++ {
			n, err := prune(ctx, cutoff, retentionBatch)
			if err != nil {
				return total, err
			}
			total += n
			if n < retentionBatch {
				break
			}
			// Let other writers in between batches.
			if !clock.Sleep(r.clock, r.pause, ctx.Done()) {
				return total, ctx.Err()
			}
		}
	}
	// Expired canvas sessions and stream tickets go too (by their expiry).
	for i := 0; i < maxBatches; i++ {
		n, err := r.store.PruneExpired(ctx, now, retentionBatch)
		if err != nil {
			return total, err
		}
		total += n
		if n < retentionBatch {
			break
		}
	}
	if total > 0 {
		r.log.Info("retention pruned old rows", "rows", total, "cutoff", cutoff)
	}
	return total, nil
}

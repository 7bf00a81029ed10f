package scheduler

import (
	"context"
	"time"

	"github.com/agentplane/agentplane/internal/groupcommit"
	"github.com/agentplane/agentplane/internal/store"
)

// committer group-commits the engine's per-run writes (marking a run
// running, recording its outcome), so a thousand runs finishing in a second
// cost tens of transactions, not thousands. A failed batch is retried op by
// op, so one bad op cannot fail its neighbours; every op re-reads what it
// changes inside the transaction, so running it again is safe. Ops for one
// schedule share a lane, so concurrent batches never lock one schedule's
// rows from two transactions of this replica.
type committer struct {
	st store.Store
	gc *groupcommit.Committer[*commitOp]
}

type commitOp struct {
	fn  func(ctx context.Context, tx store.Tx) error
	err error
}

func newCommitter(st store.Store) *committer {
	n := 1 // SQLite: one writer
	if st.Dialect() == "postgres" {
		n = 4
	}
	c := &committer{st: st}
	c.gc = groupcommit.New(n, c.commit)
	return c
}

// do runs fn in the next group commit of key's lane and returns its error.
func (c *committer) do(key string, fn func(ctx context.Context, tx store.Tx) error) error {
	o := &commitOp{fn: fn}
	c.gc.Do(key, o)
	return o.err
}

// maxBatch bounds one transaction's ops.
const maxBatch = 256

func (c *committer) commit(batch []*commitOp) {
	for len(batch) > 0 {
		n := min(len(batch), maxBatch)
		part := batch[:n]
		batch = batch[n:]
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := c.st.InTx(ctx, func(tx store.Tx) error {
			for _, o := range part {
				if err := o.fn(ctx, tx); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil && len(part) > 1 {
			for _, o := range part {
				o.err = c.st.InTx(ctx, func(tx store.Tx) error { return o.fn(ctx, tx) })
			}
		} else {
			for _, o := range part {
				o.err = err
			}
		}
		cancel()
	}
}

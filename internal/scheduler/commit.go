package scheduler

import (
	"context"
	"hash/fnv"
	"sync"
	"time"

	"github.com/agentplane/agentplane/internal/store"
)

// committer group-commits the engine's per-run writes (marking a run
// running, recording its outcome): whoever submits while a commit runs
// joins the next one, so a thousand runs finishing in a second cost tens
// of transactions, not thousands. A failed batch is retried op by op, so
// one bad op cannot fail its neighbours; every op re-reads what it changes
// inside the transaction, so running it again is safe. Ops for one
// schedule always go to the same lane, so concurrent batches never lock
// one schedule's rows from two transactions of this replica.
type committer struct {
	st    store.Store
	lanes []*commitLane
}

type commitLane struct {
	mu         sync.Mutex
	pending    []*commitOp
	committing bool
}

type commitOp struct {
	fn    func(ctx context.Context, tx store.Tx) error
	err   error
	done  chan struct{}
	lead  chan struct{}
	batch []*commitOp
}

func newCommitter(st store.Store) *committer {
	n := 1 // SQLite: one writer
	if st.Dialect() == "postgres" {
		n = 4
	}
	c := &committer{st: st}
	for range n {
		c.lanes = append(c.lanes, &commitLane{})
	}
	return c
}

// do runs fn in the next group commit of key's lane and returns its error.
func (c *committer) do(key string, fn func(ctx context.Context, tx store.Tx) error) error {
	l := c.lanes[0]
	if len(c.lanes) > 1 {
		h := fnv.New32a()
		_, _ = h.Write([]byte(key))
		l = c.lanes[h.Sum32()%uint32(len(c.lanes))]
	}
	o := &commitOp{fn: fn, done: make(chan struct{}), lead: make(chan struct{})}
	l.mu.Lock()
	l.pending = append(l.pending, o)
	var batch []*commitOp
	if l.committing {
		l.mu.Unlock()
		select {
		case <-o.done:
			return o.err
		case <-o.lead:
		}
		batch = o.batch
	} else {
		l.committing = true
		batch, l.pending = l.pending, nil
		l.mu.Unlock()
	}
	c.commit(batch)
	l.mu.Lock()
	if len(l.pending) > 0 {
		next := l.pending
		l.pending = nil
		next[0].batch = next
		close(next[0].lead)
	} else {
		l.committing = false
	}
	l.mu.Unlock()
	for _, b := range batch {
		close(b.done)
	}
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

// Package groupcommit batches writes from many goroutines into few
// transactions. It owns only the batching: who commits, when, and who waits;
// what a batch writes is the caller's commit function.
//
// Whoever submits while no commit of its lane runs commits everything
// pending, then hands the role (and the next batch) to the oldest waiter,
// so no submitter commits for others for long and no background goroutine
// is needed. Items with the same key always share a lane, so one lane's
// transactions never contend with each other for that key's rows; lanes
// commit in parallel (for stores that can: PostgreSQL yes, SQLite's single
// writer no).
package groupcommit

import (
	"hash/fnv"
	"sync"
)

// Committer batches items of type T.
type Committer[T any] struct {
	lanes  []*lane[T]
	commit func(batch []T)
}

type lane[T any] struct {
	mu         sync.Mutex
	pending    []*waiter[T]
	committing bool
}

type waiter[T any] struct {
	item  T
	done  chan struct{}
	lead  chan struct{}
	batch []*waiter[T]
}

// New returns a committer with n lanes (at least 1) whose batches are
// written by commit. commit must record each item's result in the item.
func New[T any](n int, commit func(batch []T)) *Committer[T] {
	c := &Committer[T]{commit: commit}
	for range max(n, 1) {
		c.lanes = append(c.lanes, &lane[T]{})
	}
	return c
}

func (c *Committer[T]) lane(key string) *lane[T] {
	if len(c.lanes) == 1 {
		return c.lanes[0]
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return c.lanes[h.Sum32()%uint32(len(c.lanes))]
}

// Do adds item to the next commit of key's lane and returns once that batch
// was committed (successfully or not: the item says).
func (c *Committer[T]) Do(key string, item T) {
	w := &waiter[T]{item: item, done: make(chan struct{}), lead: make(chan struct{})}
	l := c.lane(key)
	l.mu.Lock()
	l.pending = append(l.pending, w)
	var batch []*waiter[T]
	if l.committing {
		l.mu.Unlock()
		select {
		case <-w.done:
			return
		case <-w.lead: // a finishing committer handed us the role and a batch
		}
		batch = w.batch
	} else {
		l.committing = true
		batch, l.pending = l.pending, nil
		l.mu.Unlock()
	}

	// Even if commit panics, the role passes on and the batch's waiters are
	// released (the panic then continues in this goroutine): a lane must
	// never freeze.
	defer func() {
		l.mu.Lock()
		if len(l.pending) > 0 {
			// The role passes on (committing stays): the oldest waiter
			// commits everything pending now.
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
	}()
	items := make([]T, len(batch))
	for i, b := range batch {
		items[i] = b.item
	}
	c.commit(items)
}

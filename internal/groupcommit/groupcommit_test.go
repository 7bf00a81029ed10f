package groupcommit

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type item struct {
	id        int
	committed int
}

// Every item is committed exactly once, in batches, and one lane never
// runs two commits at once.
func TestEveryItemOnceNeverConcurrentPerLane(t *testing.T) {
	t.Parallel()
	for _, lanes := range []int{1, 4} {
		t.Run(fmt.Sprint("lanes=", lanes), func(t *testing.T) {
			t.Parallel()
			const n = 2000
			var (
				commits, maxBatch atomic.Int64
				entered           atomic.Int64
				mu                sync.Mutex
				inFlight          = map[string]bool{}
				gated             = map[string]bool{}
			)
			var c *Committer[*item]
			c = New(lanes, func(batch []*item) {
				key := fmt.Sprint(batch[0].id % 7)
				lane := c.lane(key)
				mu.Lock()
				name := fmt.Sprintf("%p", lane)
				if inFlight[name] {
					t.Error("two commits of one lane at once")
				}
				inFlight[name] = true
				first := !gated[name]
				gated[name] = true
				mu.Unlock()
				if first {
					// Hold each lane's first commit until every submitter
					// has arrived, so that the rest must queue (bounded).
					deadline := time.Now().Add(10 * time.Second)
					for entered.Load() < n && time.Now().Before(deadline) {
						runtime.Gosched()
					}
				}
				commits.Add(1)
				if n := int64(len(batch)); n > maxBatch.Load() {
					maxBatch.Store(n)
				}
				for _, it := range batch {
					it.committed++
				}
				mu.Lock()
				inFlight[name] = false
				mu.Unlock()
			})
			items := make([]*item, n)
			var wg sync.WaitGroup
			for i := range n {
				items[i] = &item{id: i}
				wg.Add(1)
				go func() {
					defer wg.Done()
					entered.Add(1)
					c.Do(fmt.Sprint(i%7), items[i])
					if items[i].committed != 1 {
						t.Errorf("item %d committed %d times when Do returned", i, items[i].committed)
					}
				}()
			}
			wg.Wait()
			for _, it := range items {
				require.Equal(t, 1, it.committed)
			}
			require.Less(t, commits.Load(), int64(n/2), "items were batched")
		})
	}
}

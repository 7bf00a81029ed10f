package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// NotifyChannel is the PostgreSQL channel on which commits that appended
// events announce their last event id.
const NotifyChannel = "agentplane_events"

// Listen holds a dedicated connection listening on NotifyChannel and calls
// wake for every notification. It calls beat after every notification and at
// least once per interval, and returns (to be restarted by its supervisor)
// when the connection fails. Notifications may be lost — across a reconnect,
// for instance — which only delays delivery until the relay's next read.
func (s *Store) Listen(ctx context.Context, interval time.Duration, wake func(), beat func()) error {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("listen: connect: %w", mapErr(err))
	}
	// Take the connection out of the pool: it stays in LISTEN state and is
	// closed, not returned, when we stop.
	conn := pc.Hijack()
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return fmt.Errorf("listen: %w", mapErr(err))
	}
	// A notification may have been missed while (re)connecting.
	wake()
	beat()
	for {
		wctx, cancel := context.WithTimeout(ctx, interval)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			wake()
		case errors.Is(err, context.DeadlineExceeded):
			// Quiet interval: the connection is still there.
		default:
			return fmt.Errorf("listen: %w", mapErr(err))
		}
		beat()
	}
}

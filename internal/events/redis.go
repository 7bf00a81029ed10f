package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/agentplane/agentplane/internal/supervise"
	"github.com/redis/go-redis/v9"
)

// RedisChannel carries the ids of committed events between replicas when
// --redis-url is set.
const RedisChannel = "agentplane:events"

// RedisRelay wakes every replica's hub through Redis pub/sub. Only ids travel;
// the events table stays the truth, so a message lost while Redis restarts
// delays delivery until the hub's next periodic read and loses nothing.
type RedisRelay struct {
	client   *redis.Client
	hub      *Hub
	log      *slog.Logger
	interval time.Duration
	pending  chan int64
}

// NewRedisRelay connects lazily to url (redis://host:port/db).
func NewRedisRelay(url string, hub *Hub, log *slog.Logger, interval time.Duration) (*RedisRelay, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("--redis-url: %w", err)
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = 3*time.Second, 3*time.Second, 3*time.Second
	return &RedisRelay{client: redis.NewClient(opts), hub: hub, log: log, interval: interval, pending: make(chan int64, 1024)}, nil
}

// Committed queues the announcement of a commit; it never blocks the
// committing request (a full queue drops the announcement: peers still read
// the event on their next periodic pass).
func (r *RedisRelay) Committed(id int64) {
	select {
	case r.pending <- id:
	default:
	}
}

// Run subscribes, publishes queued ids and wakes the local hub for every
// message; it beats on every message, publication and interval ping, and
// returns an error (to be restarted) when Redis fails. Run it under supervise
// as "relay-redis".
func (r *RedisRelay) Run(ctx context.Context, h *supervise.Heart) error {
	ps := r.client.Subscribe(ctx, RedisChannel)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("redis relay: subscribe: %w", err)
	}
	msgs := ps.Channel(redis.WithChannelHealthCheckInterval(r.interval))
	r.hub.Notify(0) // anything announced while we were not subscribed
	h.Beat()
	ticker := time.NewTicker(r.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-msgs:
			if !ok {
				return errors.New("redis relay: subscription closed")
			}
			r.hub.Notify(0)
		case id := <-r.pending:
			if err := r.client.Publish(ctx, RedisChannel, strconv.FormatInt(id, 10)).Err(); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("redis relay: publish: %w", err)
			}
		case <-ticker.C:
			if err := r.client.Ping(ctx).Err(); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("redis relay: ping: %w", err)
			}
		}
		h.Beat()
	}
}

// Close releases the client.
func (r *RedisRelay) Close() error { return r.client.Close() }

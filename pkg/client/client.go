// Package client is the Go client of agentplane's HTTP API for programs,
// the CLI and tests. So far it follows the live event stream.
//
// Follow never loses an event across disconnects: it remembers the id of the
// last persisted event it delivered and reconnects with ?since=<id>, so the
// server replays what was missed before going live again, with no gaps and no
// duplicates.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// Event is one event envelope (SPEC §8.2). Ephemeral events have ID 0.
type Event struct {
	ID          int64           `json:"id"`
	Event       string          `json:"event"`
	WorkspaceID string          `json:"workspace_id,omitempty"`
	Timestamp   time.Time       `json:"timestamp"`
	Payload     json.RawMessage `json:"payload"`
	Actor       string          `json:"actor,omitempty"`
}

// StreamOptions configure Follow.
type StreamOptions struct {
	// BaseURL is the server, e.g. http://127.0.0.1:8080.
	BaseURL string
	// Token is an admin or workspace bearer token.
	Token string
	// Since resumes after this event id; 0 starts with live events only.
	Since int64
	// WorkspaceID, when set, follows one workspace's events.
	WorkspaceID string
	// MinBackoff and MaxBackoff bound the wait between reconnects
	// (defaults 100 ms and 5 s).
	MinBackoff, MaxBackoff time.Duration
	// HTTPClient makes the WebSocket handshake (default http.DefaultClient).
	HTTPClient *http.Client
	// OnDisconnect, if set, is told why the stream broke before each
	// reconnect.
	OnDisconnect func(err error)
}

// ErrUnauthorized ends Follow when the server refuses the credentials.
var ErrUnauthorized = errors.New("agentplane: credentials refused")

// Follow calls fn for every event the token may see, in order, reconnecting
// and resuming as needed, until ctx ends (nil), fn returns an error (that
// error), or the credentials are refused (ErrUnauthorized).
func Follow(ctx context.Context, o StreamOptions, fn func(Event) error) error {
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	backoff := o.MinBackoff
	since := o.Since
	for {
		delivered, err := followOnce(ctx, o, since, func(e Event) error {
			if e.ID > 0 {
				if e.ID <= since {
					return nil // already delivered before a reconnect
				}
				since = e.ID
			}
			return fn(e)
		})
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrUnauthorized):
			return err
		case errors.As(err, new(*callbackError)):
			return err.(*callbackError).err
		}
		if delivered {
			backoff = o.MinBackoff
		}
		if o.OnDisconnect != nil {
			o.OnDisconnect(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, o.MaxBackoff)
	}
}

type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

func streamURL(o StreamOptions, since int64) (string, error) {
	u, err := url.Parse(strings.TrimRight(o.BaseURL, "/") + "/ws")
	if err != nil {
		return "", fmt.Errorf("agentplane: base URL: %w", err)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	q := u.Query()
	if since > 0 {
		q.Set("since", strconv.FormatInt(since, 10))
	}
	if o.WorkspaceID != "" {
		q.Set("workspace_id", o.WorkspaceID)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// followOnce runs one connection; it reports whether anything was delivered.
func followOnce(ctx context.Context, o StreamOptions, since int64, fn func(Event) error) (bool, error) {
	target, err := streamURL(o, since)
	if err != nil {
		return false, err
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	c, resp, err := websocket.Dial(dctx, target, &websocket.DialOptions{
		HTTPClient: o.HTTPClient,
		HTTPHeader: http.Header{"Authorization": {"Bearer " + o.Token}},
	})
	cancel()
	if err != nil {
		if resp != nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
			return false, fmt.Errorf("%w (HTTP %d)", ErrUnauthorized, resp.StatusCode)
		}
		return false, fmt.Errorf("agentplane: connect: %w", err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	delivered := false
	for {
		_, msg, err := c.Read(ctx)
		if err != nil {
			return delivered, fmt.Errorf("agentplane: stream: %w", err)
		}
		var e Event
		if err := json.Unmarshal(msg, &e); err != nil {
			return delivered, fmt.Errorf("agentplane: bad event: %w", err)
		}
		if err := fn(e); err != nil {
			return delivered, &callbackError{err}
		}
		delivered = true
	}
}

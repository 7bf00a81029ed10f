package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/events"
	"github.com/agentplane/agentplane/internal/fault"
	"github.com/agentplane/agentplane/internal/httpapi"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/coder/websocket"
	"github.com/google/uuid"
)

// Stream settings (SPEC §8.3).
const (
	PingInterval  = 20 * time.Second
	streamQueue   = 1024
	writeTimeout  = 10 * time.Second
	replayBatch   = 500
	wsCloseSlow   = websocket.StatusCode(4008)
	wsCloseClosed = websocket.StatusCode(4009)
)

func (s *Server) issueTicket(w http.ResponseWriter, r *http.Request) {
	ticket, expires, err := s.d.Auth.IssueTicket(r.Context(), auth.FromContext(r.Context()))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, map[string]any{"ticket": ticket, "expires_at": expires})
}

// streamRequest is what a stream client asked for.
type streamRequest struct {
	principal   *auth.Principal
	workspaceID string
	since       int64
	replay      bool
}

func parseStream(r *http.Request, lastEventID string) (streamRequest, error) {
	q := r.URL.Query()
	sr := streamRequest{principal: auth.FromContext(r.Context())}
	if v := q.Get("workspace_id"); v != "" {
		id, err := uuid.Parse(v)
		if err != nil {
			return sr, fault.Invalid("workspace_id", "must be a workspace id (uuid)")
		}
		sr.workspaceID = id.String()
	}
	v := lastEventID
	field := "Last-Event-ID"
	if v == "" {
		v, field = q.Get("since"), "since"
	}
	if v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return sr, fault.Invalid(field, "must be an event id (a non-negative integer)")
		}
		sr.since, sr.replay = n, true
	}
	return sr, nil
}

// errSlow ends a stream whose client fell behind.
var errSlow = errors.New("client fell behind")

// runStream subscribes first, replays (since, start] from the store, then
// follows live events; send is called for every event the caller may see,
// ping every PingInterval. It returns when the client goes or falls behind.
// subscribe joins the live feed before anything is written to the client, so
// that a hub that is not ready yet is a clean 503.
func (s *Server) subscribe() (*events.Subscription, int64, error) {
	sub, start, err := s.d.Hub.Subscribe(streamQueue)
	if err != nil {
		return nil, 0, fault.Unavailable(2*time.Second, "the event stream is not ready yet (%v); retry", err)
	}
	return sub, start, nil
}

func (s *Server) runStream(ctx context.Context, sr streamRequest, sub *events.Subscription, start int64, send func(store.Event) error, ping func() error) error {
	defer sub.Close()
	// lastSent guards against duplicates: the hub's reader may not have
	// caught up with the store when we subscribed, so the live feed can
	// repeat ids the replay (or the client, via since) already has.
	lastSent := sr.since
	deliver := send
	send = func(ev store.Event) error {
		if ev.ID > 0 {
			if ev.ID <= lastSent {
				return nil
			}
			lastSent = ev.ID
		}
		return deliver(ev)
	}
	visible := func(ev store.Event) (bool, error) {
		if sr.workspaceID != "" && ev.WorkspaceID != sr.workspaceID {
			return false, nil
		}
		return events.Visible(ctx, ev, sr.principal, s.d.Registry.CanTalk)
	}
	if sr.replay {
		for after := sr.since; after < start; {
			batch, err := s.d.Store.ListEvents(ctx, store.EventFilter{AfterID: after, WorkspaceID: sr.workspaceID, Limit: replayBatch})
			if err != nil {
				return err
			}
			if len(batch) == 0 {
				break
			}
			for _, ev := range batch {
				if ev.ID > start {
					after = start // the live feed has it
					break
				}
				after = ev.ID
				ok, err := visible(ev)
				if err != nil {
					return err
				}
				if ok {
					if err := send(ev); err != nil {
						return err
					}
				}
			}
		}
	}
	every := s.d.PingInterval
	if every <= 0 {
		every = PingInterval
	}
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			if err := ping(); err != nil {
				return err
			}
		case ev, ok := <-sub.C():
			if !ok {
				if errors.Is(sub.Err(), events.ErrSlowConsumer) {
					return errSlow
				}
				return sub.Err()
			}
			vis, err := visible(ev)
			if err != nil {
				return err
			}
			if vis {
				if err := send(ev); err != nil {
					return err
				}
			}
		}
	}
}

// sseStream is GET /events/stream (Server-Sent Events): one envelope per
// data line, the event id as the SSE id so that EventSource resumes with
// Last-Event-ID; ephemeral events carry no id.
func (s *Server) sseStream(w http.ResponseWriter, r *http.Request) {
	sr, err := parseStream(r, r.Header.Get("Last-Event-ID"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sub, start, err := s.subscribe()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(chunk string) error {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := fmt.Fprint(w, chunk); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := write(": connected\n\n"); err != nil {
		sub.Close()
		return
	}
	err = s.runStream(r.Context(), sr, sub, start, func(ev store.Event) error {
		b, err := encode(ev)
		if err != nil {
			return err
		}
		if ev.ID > 0 {
			return write(fmt.Sprintf("id: %d\ndata: %s\n\n", ev.ID, b))
		}
		return write(fmt.Sprintf("data: %s\n\n", b))
	}, func() error { return write(": ping\n\n") })
	if errors.Is(err, errSlow) {
		_ = write("event: closed\ndata: {\"reason\":\"slow consumer: reconnect with Last-Event-ID to resume\"}\n\n")
	}
}

// wsStream is GET /ws: one envelope per text frame. Origin was already
// checked for cookie-authenticated upgrades (auth); bearer and ticket
// credentials are not ambient, so cross-origin clients holding one are fine.
func (s *Server) wsStream(w http.ResponseWriter, r *http.Request) {
	sr, err := parseStream(r, "")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sub, start, err := s.subscribe()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		sub.Close()
		return // Accept answered the client
	}
	defer c.CloseNow()
	ctx := c.CloseRead(r.Context()) // we never read; this notices the client leaving
	err = s.runStream(ctx, sr, sub, start, func(ev store.Event) error {
		b, err := encode(ev)
		if err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, writeTimeout)
		defer cancel()
		return c.Write(wctx, websocket.MessageText, b)
	}, func() error {
		pctx, cancel := context.WithTimeout(ctx, writeTimeout)
		defer cancel()
		return c.Ping(pctx)
	})
	switch {
	case errors.Is(err, errSlow):
		c.Close(wsCloseSlow, "slow consumer: reconnect with ?since=<last id> to resume")
	case errors.Is(err, events.ErrHubClosed):
		c.Close(websocket.StatusGoingAway, "server shutting down: reconnect with ?since=<last id>")
	case err != nil:
		c.Close(wsCloseClosed, "stream ended: reconnect with ?since=<last id>")
	default:
		c.Close(websocket.StatusNormalClosure, "")
	}
}

// encode returns the envelope's JSON, reusing the fan-out's encoding.
func encode(ev store.Event) ([]byte, error) {
	if ev.Encoded != nil {
		return ev.Encoded, nil
	}
	return json.Marshal(ev)
}

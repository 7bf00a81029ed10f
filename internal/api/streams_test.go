package api

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

type envelope struct {
	ID          int64           `json:"id"`
	Event       string          `json:"event"`
	WorkspaceID string          `json:"workspace_id"`
	Payload     json.RawMessage `json:"payload"`
}

func dialWS(t *testing.T, url string, h http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http"), &websocket.DialOptions{HTTPHeader: h})
}

func readWS(t *testing.T, c *websocket.Conn) envelope {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	require.NoError(t, err)
	require.Equal(t, websocket.MessageText, typ)
	var e envelope
	require.NoError(t, json.Unmarshal(b, &e))
	return e
}

func (b *testBundle) logActivity(summary string) {
	b.t.Helper()
	w := b.do("POST", "/workspaces/"+b.ownID+"/activity", map[string]any{"activity_type": "agent_log", "summary": summary}, bearer(b.ownToken))
	require.Equal(b.t, 200, w.Code, w.Body.String())
}

func (b *testBundle) latest() int64 {
	b.t.Helper()
	id, err := b.store.LatestEventID(b.ctx)
	require.NoError(b.t, err)
	return id
}

func TestStreams(t *testing.T) {
	t.Parallel()

	t.Run("UnauthenticatedAndCrossSiteUpgradesRefused", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		base := b.serve()
		_, resp, err := dialWS(t, base+"/ws", nil)
		require.Error(t, err)
		require.Equal(t, 401, resp.StatusCode)
		r, err := http.Get(base + "/events/stream")
		require.NoError(t, err)
		r.Body.Close()
		require.Equal(t, 401, r.StatusCode)

		h := http.Header{"Cookie": {"agentplane_session=" + b.session}, "Origin": {"https://evil.example"}}
		_, resp, err = dialWS(t, base+"/ws", h)
		require.Error(t, err)
		require.Equal(t, 403, resp.StatusCode, "cookie upgrade from a foreign origin")
		h.Set("Origin", "https://canvas.example.com") // in --allowed-origins
		c, _, err := dialWS(t, base+"/ws", h)
		require.NoError(t, err)
		c.CloseNow()
	})

	t.Run("TicketIsSingleUse", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		base := b.serve()
		w := b.do("POST", "/auth/ws-ticket", nil, bearer(b.ownToken))
		require.Equal(t, 201, w.Code)
		tk := decodeBody[map[string]any](t, w)["ticket"].(string)
		c, _, err := dialWS(t, base+"/ws?ticket="+tk, nil)
		require.NoError(t, err)
		c.CloseNow()
		_, resp, err := dialWS(t, base+"/ws?ticket="+tk, nil)
		require.Error(t, err)
		require.Equal(t, 401, resp.StatusCode, "a used ticket is dead")
		w = b.do("POST", "/auth/ws-ticket", nil, bearer(adminToken))
		tk = decodeBody[map[string]any](t, w)["ticket"].(string)
		b.clock.Advance(61 * time.Second)
		_, resp, err = dialWS(t, base+"/ws?ticket="+tk, nil)
		require.Error(t, err)
		require.Equal(t, 401, resp.StatusCode, "an expired ticket is dead")
	})

	t.Run("WebSocketResumesWithoutGapsOrDuplicates", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		base := b.serve()
		b.logActivity("one")
		mark := b.latest()
		b.logActivity("two")
		b.logActivity("three")
		c, _, err := dialWS(t, base+"/ws?since="+itoa(mark)+"&workspace_id="+b.ownID, http.Header{"Authorization": {"Bearer " + adminToken}})
		require.NoError(t, err)
		defer c.CloseNow()
		var got []int64
		for i := 0; i < 2; i++ {
			e := readWS(t, c)
			require.Equal(t, "ACTIVITY_LOGGED", e.Event)
			got = append(got, e.ID)
		}
		b.logActivity("four") // live, after the replay
		e := readWS(t, c)
		require.Equal(t, "ACTIVITY_LOGGED", e.Event)
		got = append(got, e.ID)
		require.Equal(t, 3, len(got))
		require.Greater(t, got[0], mark)
		require.Less(t, got[0], got[1])
		require.Less(t, got[1], got[2])
		require.Equal(t, b.latest(), got[2])
	})

	t.Run("SSEReplaysFromLastEventIDThenFollowsLive", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		base := b.serve()
		b.logActivity("before")
		mark := b.latest()
		b.logActivity("missed")
		req, err := http.NewRequest("GET", base+"/events/stream?workspace_id="+b.ownID, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+b.ownToken)
		req.Header.Set("Last-Event-ID", itoa(mark))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
		sc := bufio.NewScanner(resp.Body)
		next := func() (string, envelope) {
			var id string
			for sc.Scan() {
				line := sc.Text()
				switch {
				case strings.HasPrefix(line, "id: "):
					id = strings.TrimPrefix(line, "id: ")
				case strings.HasPrefix(line, "data: "):
					var e envelope
					require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &e))
					return id, e
				}
			}
			t.Fatal("stream ended")
			return "", envelope{}
		}
		id, e := next()
		require.Equal(t, "ACTIVITY_LOGGED", e.Event)
		require.Equal(t, itoa(e.ID), id)
		require.Greater(t, e.ID, mark)
		// Live: a heartbeat is ephemeral (no id), then a persisted event.
		require.Equal(t, 200, b.do("POST", "/registry/register", map[string]any{"url": "http://127.0.0.1:9"}, bearer(b.ownToken)).Code)
		require.Equal(t, 200, b.do("POST", "/registry/heartbeat", map[string]any{}, bearer(b.ownToken)).Code)
		seen := map[string]string{}
		for len(seen) < 2 {
			id, e := next()
			if e.Event == "WORKSPACE_HEARTBEAT" || e.Event == "WORKSPACE_ONLINE" {
				seen[e.Event] = id
			}
		}
		require.Empty(t, seen["WORKSPACE_HEARTBEAT"], "ephemeral events have no id")
		require.NotEmpty(t, seen["WORKSPACE_ONLINE"])
	})

	t.Run("WorkspaceStreamSeesOnlyWhatTheCatalogueAllows", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		base := b.serve()
		c, _, err := dialWS(t, base+"/ws", http.Header{"Authorization": {"Bearer " + b.otherToken}})
		require.NoError(t, err)
		defer c.CloseNow()
		// Invisible to "other": own's activity (workspace audience) and a
		// security event (admin only). Visible: own's status (reachable).
		b.logActivity("private to own")
		require.Equal(t, 403, b.do("POST", "/workspaces/"+b.ownID+"/activity", map[string]any{"activity_type": "agent_log", "source_id": b.otherID}, bearer(b.ownToken)).Code)
		require.Equal(t, 200, b.do("POST", "/registry/register", map[string]any{"url": "http://127.0.0.1:9"}, bearer(b.ownToken)).Code)
		for {
			e := readWS(t, c)
			require.NotEqual(t, "ACTIVITY_LOGGED", e.Event)
			require.NotEqual(t, "SECURITY_EVENT", e.Event)
			if e.Event == "WORKSPACE_ONLINE" {
				require.Equal(t, b.ownID, e.WorkspaceID)
				break
			}
		}
	})

	t.Run("BadResumeParameters", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.Equal(t, 400, b.do("GET", "/events/stream?since=abc", nil, bearer(adminToken)).Code)
		require.Equal(t, 400, b.do("GET", "/events/stream?workspace_id=nope", nil, bearer(adminToken)).Code)
		require.Equal(t, 400, b.do("GET", "/events/stream", nil, bearer(adminToken), header("Last-Event-ID", "-4")).Code)
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestSlowClientClosedFastKeepsUp: a client that stops reading is closed with
// a reason (code 4008) once its kernel buffers and its queue are full, while
// a client that reads receives every event; publishers never wait.
func TestSlowClientClosedFastKeepsUp(t *testing.T) {
	t.Parallel()
	b := setup(t)
	base := b.serve()
	hdr := http.Header{"Authorization": {"Bearer " + adminToken}}
	slow, _, err := dialWS(t, base+"/ws", hdr)
	require.NoError(t, err)
	defer slow.CloseNow()
	fast, _, err := dialWS(t, base+"/ws", hdr)
	require.NoError(t, err)
	defer fast.CloseNow()
	fast.SetReadLimit(1 << 20)

	// ~40 MB of events, far beyond loopback socket buffers plus the queue.
	const batches, per = 40, 1000
	payload := json.RawMessage(`{"pad":"` + strings.Repeat("x", 1000) + `"}`)
	total := 0
	var progress atomic.Int64
	received := make(chan int, 1)
	go func() {
		n := 0
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		for n < batches*per {
			_, msg, err := fast.Read(ctx)
			if err != nil {
				break
			}
			if strings.Contains(string(msg), `"BULK"`) {
				n++
				progress.Store(int64(n))
			}
		}
		received <- n
	}()
	for i := 0; i < batches; i++ {
		// Pace the writer by the fast client (a batch is smaller than a
		// stream's queue), so that only the client that stopped reading can
		// fall behind, however loaded the machine is.
		require.Eventually(t, func() bool { return progress.Load() >= int64(total) }, 60*time.Second, time.Millisecond)
		require.NoError(t, b.store.InTx(b.ctx, func(tx store.Tx) error {
			for j := 0; j < per; j++ {
				if _, _, err := tx.AppendEvent(b.ctx, store.EventInput{Type: "BULK", Audience: store.AudienceAdmin, Payload: payload}); err != nil {
					return err
				}
			}
			return nil
		}))
		total += per
	}
	require.Equal(t, total, <-received, "the fast client got every event")

	// The slow client finds, after what fitted in the buffers, that it was
	// closed: with code 4008 and the reason when the close frame still fits
	// behind the data it never read, or as a dropped connection when the
	// server's close handshake timed out on the full pipe. Never a hang
	// (the read deadline fails the test).
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	slow.SetReadLimit(1 << 20)
	for {
		_, _, err := slow.Read(ctx)
		if err != nil {
			require.NoError(t, ctx.Err(), "the slow client was never closed")
			if code := websocket.CloseStatus(err); code != -1 {
				require.Equal(t, websocket.StatusCode(4008), code, "%v", err)
				require.Contains(t, err.Error(), "resume")
			}
			break
		}
	}
}

func TestIdleStreamsArePinged(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.server.d.PingInterval = 20 * time.Millisecond
	base := b.serve()
	req, err := http.NewRequest("GET", base+"/events/stream", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	pings := 0
	for pings < 3 && sc.Scan() {
		if sc.Text() == ": ping" {
			pings++
		}
	}
	require.Equal(t, 3, pings)
}

package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/testenv"
	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// redisServer is a private redis-server process the test can kill and
// restart on the same port.
type redisServer struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if testenv.InCI() {
			t.Fatal("redis-server is required under CI=true")
		}
		t.Skip("redis-server not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &redisServer{t: t, port: port, dir: t.TempDir()}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *redisServer) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", fmt.Sprint(r.port), "--dir", r.dir, "--save", "", "--appendonly", "no")
	require.NoError(r.t, r.cmd.Start())
	require.Eventually(r.t, func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", r.port), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
}

func (r *redisServer) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// TestRedisRestartLosesNothing kills Redis between bursts of events caused on
// replica A: a WebSocket client of replica B still sees every one, once and
// in order (the events table is the truth; Redis only wakes readers).
func TestRedisRestartLosesNothing(t *testing.T) {
	t.Parallel()
	rd := startRedis(t)
	dbURL := testenv.PostgresSchema(t)
	args := []string{"--database-url", dbURL, "--secret-key", strings.Repeat("ab", 32), "--redis-url", rd.url()}
	a := start(t, testConfig(t, args...))
	b := start(t, testConfig(t, args...))
	<-a.app.Migrated()
	<-b.app.Migrated()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(b.base, "http")+"/ws",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + adminToken}}})
	require.NoError(t, err)
	defer c.CloseNow()

	create := func(name string) {
		req, _ := http.NewRequest("POST", a.base+"/workspaces", strings.NewReader(`{"name":"`+name+`"}`))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 201, resp.StatusCode)
	}
	var want []string
	for phase, action := range []func(){func() {}, rd.kill, rd.start} {
		action()
		for i := 0; i < 3; i++ {
			name := fmt.Sprintf("p%d-%d", phase, i)
			create(name)
			want = append(want, name)
		}
	}
	var got []string
	var lastID float64
	for len(got) < len(want) {
		_, msg, err := c.Read(ctx)
		require.NoError(t, err, "saw %v of %v", got, want)
		var e struct {
			ID      float64        `json:"id"`
			Event   string         `json:"event"`
			Payload map[string]any `json:"payload"`
		}
		require.NoError(t, json.Unmarshal(msg, &e))
		if e.ID > 0 {
			require.Greater(t, e.ID, lastID, "in order, no duplicates")
			lastID = e.ID
		}
		if e.Event == "WORKSPACE_CREATED" {
			got = append(got, e.Payload["name"].(string))
		}
	}
	require.Equal(t, want, got)
	// The relay loop recovers after Redis came back.
	require.Eventually(t, func() bool {
		_, body := b.get(t, "/livez", false)
		return body["status"] == "ok"
	}, 30*time.Second, 100*time.Millisecond)
}

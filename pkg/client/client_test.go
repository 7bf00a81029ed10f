package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/app"
	"github.com/agentplane/agentplane/internal/config"
	"github.com/agentplane/agentplane/internal/testenv"
	"github.com/agentplane/agentplane/pkg/client"
	"github.com/stretchr/testify/require"
)

const adminToken = "client-test-admin-token-123"

func startServer(t *testing.T) string {
	t.Helper()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg := config.Register(fs, config.ScopeServe)
	require.NoError(t, config.Parse(fs, []string{"--data-dir", t.TempDir(), "--admin-token", adminToken, "--shutdown-grace", "2s"}, []string{}))
	require.NoError(t, cfg.Validate())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), app.Options{Listener: ln, Out: io.Discard})
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-a.Migrated()
	return a.Addr()
}

func createWorkspace(t *testing.T, base, name string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/workspaces", strings.NewReader(`{"name":"`+name+`"}`))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 201, resp.StatusCode)
}

// TestFollowResumesAcrossDisconnects cuts the network between client and
// server (a loopback proxy) while events happen: Follow reconnects with
// since and delivers every event once, in order.
func TestFollowResumesAcrossDisconnects(t *testing.T) {
	t.Parallel()
	addr := startServer(t)
	direct := "http://" + addr
	proxy := testenv.NewProxy(t, addr)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		mu    sync.Mutex
		names []string
		drops int
	)
	got := make(chan struct{}, 100)
	probed := make(chan struct{}, 100)
	followErr := make(chan error, 1)
	go func() {
		followErr <- client.Follow(ctx, client.StreamOptions{
			BaseURL: "http://" + proxy.Addr(), Token: adminToken, MinBackoff: 20 * time.Millisecond,
			OnDisconnect: func(error) { mu.Lock(); drops++; mu.Unlock() },
		}, func(e client.Event) error {
			if e.Event == "WORKSPACE_CREATED" {
				var p struct{ Name string }
				_ = json.Unmarshal(e.Payload, &p)
				if strings.HasPrefix(p.Name, "probe-") {
					probed <- struct{}{}
					return nil
				}
				mu.Lock()
				names = append(names, p.Name)
				mu.Unlock()
				got <- struct{}{}
			}
			return nil
		})
	}()
	waitFor := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			select {
			case <-got:
			case <-ctx.Done():
				t.Fatalf("only %v arrived", names)
			}
		}
	}
	// The client starts live-only: probe until it is subscribed.
	probe := 0
	require.Eventually(t, func() bool {
		probe++
		createWorkspace(t, direct, "probe-"+strconv.Itoa(probe))
		select {
		case <-probed:
			return true
		case <-time.After(200 * time.Millisecond):
			return false
		}
	}, 20*time.Second, 10*time.Millisecond)
	createWorkspace(t, direct, "first")
	waitFor(1)

	proxy.Cut() // closes the client's connection; events go on meanwhile
	createWorkspace(t, direct, "while-cut-1")
	createWorkspace(t, direct, "while-cut-2")
	proxy.Restore()
	waitFor(2)
	createWorkspace(t, direct, "after")
	waitFor(1)

	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"first", "while-cut-1", "while-cut-2", "after"}, names)
	require.Positive(t, drops)
	cancel()
	require.NoError(t, <-followErr)
}

func TestFollowStopsOnRefusedCredentials(t *testing.T) {
	t.Parallel()
	addr := startServer(t)
	err := client.Follow(context.Background(), client.StreamOptions{BaseURL: "http://" + addr, Token: "apa_wrongwrongwrongwrongwrongwrongwrongwrong1"},
		func(client.Event) error { return nil })
	require.True(t, errors.Is(err, client.ErrUnauthorized), "%v", err)
}

package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/config"
	"github.com/agentplane/agentplane/internal/registry"
	"github.com/agentplane/agentplane/internal/testenv"
	"github.com/stretchr/testify/require"
)

// benchServer starts a real server on loopback for a benchmark.
func benchServer(b *testing.B, backend string, extra ...string) (*App, string) {
	b.Helper()
	args := []string{"--allow-private-agents"}
	if backend == "postgres" {
		args = append(args, "--database-url", testenv.PostgresSchema(b), "--secret-key", strings.Repeat("ab", 32))
	}
	fs := newFlagSet()
	cfg := config.Register(fs, config.ScopeServe)
	require.NoError(b, config.Parse(fs, append(append([]string{"--data-dir", b.TempDir(), "--admin-token", adminToken, "--shutdown-grace", "5s"}, args...), extra...), []string{}))
	require.NoError(b, cfg.Validate())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Listener: ln, Out: io.Discard})
	require.NoError(b, err)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	<-a.Migrated()
	return a, "http://" + a.Addr()
}

// BenchmarkHeartbeat: 1,000 registered workspaces, 32 concurrent senders on
// the same 2 cores, each request a real HTTP heartbeat through auth, the
// status machine and the store. Reports heartbeats/s and p50/p99 latency.
//
//	go test -run '^$' -bench BenchmarkHeartbeat -benchtime 20000x ./internal/app
func BenchmarkHeartbeat(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			if backend == "postgres" {
				testenv.PostgresURL(b)
			}
			benchHeartbeat(b, backend)
		})
	}
}

func benchHeartbeat(b *testing.B, backend string) {
	a, base := benchServer(b, backend)
	const workspaces, senders = 1000, 32
	tokens := make([]string, workspaces)
	for i := range tokens {
		c, err := a.Registry.Create(context.Background(), "admin:bench", registry.CreateInput{Name: fmt.Sprintf("bench-%d", i)})
		require.NoError(b, err)
		tokens[i] = c.Token
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders, MaxConnsPerHost: senders}}
	post := func(path, tok string, body any) (int, time.Duration) {
		buf, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", base+path, bytes.NewReader(buf))
		req.Header.Set("Authorization", "Bearer "+tok)
		start := time.Now()
		resp, err := client.Do(req)
		d := time.Since(start)
		if err != nil {
			return 0, d
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, d
	}
	for _, tok := range tokens {
		code, _ := post("/registry/register", tok, map[string]any{"url": "http://127.0.0.1:9"})
		require.Equal(b, 200, code)
	}
	var (
		next  atomic.Int64
		fails atomic.Int64
		mu    sync.Mutex
		lat   = make([]time.Duration, 0, b.N)
		wg    sync.WaitGroup
	)
	b.ResetTimer()
	start := time.Now()
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, b.N/senders+1)
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					break
				}
				// Steady state: an agent's counts rarely change between beats.
				code, d := post("/registry/heartbeat", tokens[i%workspaces], map[string]any{"active_tasks": 1, "current_task": "idle", "error_rate": 0.0, "uptime_seconds": i})
				if code != 200 {
					fails.Add(1)
				}
				local = append(local, d)
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	require.Zero(b, fails.Load(), "every heartbeat must succeed")
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) / 1000 }
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "heartbeats/s")
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
}

// BenchmarkOfflineDetection measures, on the wall clock, the time from a
// workspace's last heartbeat to its WORKSPACE_OFFLINE event with
// --heartbeat-ttl 3s. The ideal is exactly 3 s.
//
//	go test -run '^$' -bench BenchmarkOfflineDetection -benchtime 3x ./internal/app
func BenchmarkOfflineDetection(b *testing.B) {
	a, _ := benchServer(b, "sqlite", "--heartbeat-ttl", "3s")
	var total time.Duration
	for i := 0; i < b.N; i++ {
		c, err := a.Registry.Create(context.Background(), "admin:bench", registry.CreateInput{Name: fmt.Sprintf("offline-%d", i)})
		require.NoError(b, err)
		sub, _, err := a.Hub.Subscribe(1000)
		require.NoError(b, err)
		caller := registry.Caller{Principal: &auth.Principal{Kind: auth.KindWorkspace, WorkspaceID: c.Workspace.ID}}
		_, err = a.Registry.Register(context.Background(), caller, registry.RegisterInput{URL: "http://127.0.0.1:9"})
		require.NoError(b, err)
		last := time.Now()
		for ev := range sub.C() {
			if ev.Type == "WORKSPACE_OFFLINE" && ev.WorkspaceID == c.Workspace.ID {
				total += time.Since(last)
				break
			}
		}
		sub.Close()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s_to_offline")
	b.ReportMetric(0, "ns/op")
}

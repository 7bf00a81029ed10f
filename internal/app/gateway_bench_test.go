package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/registry"
	"github.com/agentplane/agentplane/internal/testenv"
	"github.com/stretchr/testify/require"
)

// echoAgent is a minimal A2A JSON-RPC agent on loopback: it answers every
// request with a message echoing the request id.
func echoAgent(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var env struct{ ID json.RawMessage }
		_ = json.Unmarshal(body, &env)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"kind":"message","messageId":"r","role":"agent","parts":[{"kind":"text","text":"echo"}]}}`, env.ID)
	})}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// BenchmarkGateway compares calling an echo agent directly on loopback with
// calling it through POST /workspaces/:id/a2a (auth, admission, a capacity
// lease, signing, the a2a_receive record), load generator on the same
// cores. 8 workspaces with max_concurrent_tasks 8 share the agent; callers
// spread over them, so 64 callers exactly fill every slot.
//
//	go test -run '^$' -bench BenchmarkGateway -benchtime 20000x ./internal/app
func BenchmarkGateway(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		for _, callers := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/callers=%d", backend, callers), func(b *testing.B) {
				if backend == "postgres" {
					testenv.PostgresURL(b)
				}
				benchGateway(b, backend, callers)
			})
		}
	}
}

func benchGateway(b *testing.B, backend string, callers int) {
	a, base := benchServer(b, backend)
	agentURL := echoAgent(b)
	const workspaces, slots = 8, 8
	ids := make([]string, workspaces)
	for i := range ids {
		max := slots
		c, err := a.Registry.Create(context.Background(), "admin:bench", registry.CreateInput{Name: fmt.Sprintf("gw-%d", i), MaxConcurrentTasks: &max})
		require.NoError(b, err)
		ids[i] = c.Workspace.ID
		req, _ := http.NewRequest("POST", base+"/registry/register", bytes.NewReader([]byte(`{"url":"`+agentURL+`"}`)))
		req.Header.Set("Authorization", "Bearer "+c.Token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(b, err)
		resp.Body.Close()
		require.Equal(b, 200, resp.StatusCode)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: callers, MaxConnsPerHost: callers}}
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"kind":"message","messageId":"m","role":"user","parts":[{"kind":"text","text":"hi"}]}}}`)
	call := func(url string, auth bool) (bool, time.Duration) {
		req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if auth {
			req.Header.Set("Authorization", "Bearer "+adminToken)
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return false, time.Since(start)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200, time.Since(start)
	}
	run := func(target func(i int64) (string, bool)) (float64, []time.Duration, int64) {
		var (
			next  atomic.Int64
			fails atomic.Int64
			mu    sync.Mutex
			lat   = make([]time.Duration, 0, b.N)
			wg    sync.WaitGroup
		)
		start := time.Now()
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				local := make([]time.Duration, 0, b.N/callers+1)
				for {
					i := next.Add(1) - 1
					if i >= int64(b.N) {
						break
					}
					url, auth := target(i)
					ok, d := call(url, auth)
					if !ok {
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
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		return float64(b.N) / elapsed.Seconds(), lat, fails.Load()
	}
	pct := func(lat []time.Duration, p float64) float64 {
		return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) / 1000
	}
	// Warm both paths (connections, prepared statements) before measuring.
	for i := range 200 {
		call(agentURL, false)
		call(base+"/workspaces/"+ids[i%workspaces]+"/a2a", true)
	}
	b.ResetTimer()
	directRate, directLat, fails := run(func(int64) (string, bool) { return agentURL, false })
	require.Zero(b, fails)
	gwRate, gwLat, fails := run(func(i int64) (string, bool) {
		return base + "/workspaces/" + ids[i%workspaces] + "/a2a", true
	})
	b.StopTimer()
	require.Zero(b, fails, "every call must succeed (none busy: callers never exceed the slots)")
	b.ReportMetric(gwRate, "gw_req/s")
	b.ReportMetric(directRate, "direct_req/s")
	b.ReportMetric(pct(gwLat, 0.5), "gw_p50_ms")
	b.ReportMetric(pct(gwLat, 0.99), "gw_p99_ms")
	b.ReportMetric(pct(directLat, 0.5), "direct_p50_ms")
	b.ReportMetric(pct(gwLat, 0.5)-pct(directLat, 0.5), "added_p50_ms")
}

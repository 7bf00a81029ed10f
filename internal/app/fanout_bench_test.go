package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/testenv"
	"github.com/coder/websocket"
)

// BenchmarkFanout measures live delivery on loopback, load generator on the
// same 2 cores: clients WebSocket connections receive events appended at
// rate/s for a few seconds. Reports deliveries/s, publish-to-receive p50/p99
// and heap per client.
//
//	go test -run '^$' -bench 'BenchmarkFanout' -benchtime 1x ./internal/app
func BenchmarkFanout(b *testing.B) {
	cases := []struct {
		name          string
		clients, rate int
	}{
		{"1000clients_50eps", 1000, 50},
		{"10clients_5000eps", 10, 5000},
		{"1000clients_100eps", 1000, 100},
		{"1000clients_200eps", 1000, 200},
	}
	for _, backend := range []string{"sqlite", "postgres"} {
		for _, c := range cases {
			b.Run(backend+"/"+c.name, func(b *testing.B) {
				if backend == "postgres" {
					testenv.PostgresURL(b)
				}
				benchFanout(b, backend, c.clients, c.rate, 5*time.Second)
			})
		}
	}
}

func benchFanout(b *testing.B, backend string, clients, rate int, dur time.Duration) {
	a, base := benchServer(b, backend)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	var (
		delivered   atomic.Int64
		closedEarly atomic.Int64
		mu          sync.Mutex
		lat         []time.Duration
		wg          sync.WaitGroup
		ready       sync.WaitGroup
	)
	for i := 0; i < clients; i++ {
		ready.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws",
				&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + adminToken}}})
			ready.Done()
			if err != nil {
				b.Errorf("dial: %v", err)
				return
			}
			defer c.CloseNow()
			local := make([]time.Duration, 0, rate*int(dur.Seconds())+16)
			for {
				_, msg, err := c.Read(ctx)
				if err != nil {
					if ctx.Err() == nil {
						closedEarly.Add(1)
						b.Logf("stream closed early: %v", err)
					}
					break
				}
				var e struct {
					Payload struct {
						T int64 `json:"t"`
					} `json:"payload"`
				}
				if json.Unmarshal(msg, &e) == nil && e.Payload.T > 0 {
					local = append(local, time.Duration(time.Now().UnixNano()-e.Payload.T))
					delivered.Add(1)
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	ready.Wait()
	time.Sleep(200 * time.Millisecond) // let every stream subscribe before the clock starts
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)

	// Writers, like request handlers, commit one event per transaction from
	// several goroutines at once; each keeps its share of the rate.
	const writers = 8
	b.ResetTimer()
	start := time.Now()
	var (
		published atomic.Int64
		pubWG     sync.WaitGroup
	)
	for w := 0; w < writers; w++ {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			interval := time.Second * writers / time.Duration(rate)
			for next := start.Add(time.Duration(w) * interval / writers); time.Since(start) < dur; next = next.Add(interval) {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				payload := fmt.Sprintf(`{"t":%d}`, time.Now().UnixNano())
				err := a.Store.InTx(ctx, func(tx store.Tx) error {
					_, _, err := tx.AppendEvent(ctx, store.EventInput{Type: "BENCH", Audience: store.AudienceAdmin, Payload: json.RawMessage(payload)})
					return err
				})
				if err != nil {
					b.Errorf("publish: %v", err)
					return
				}
				published.Add(1)
			}
		}()
	}
	pubWG.Wait()
	elapsed := time.Since(start)
	// Drain: wait (bounded) until every client has every event, so that a
	// shortfall means loss, not lateness.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if delivered.Load() >= published.Load()*int64(clients) {
			break
		}
	}
	b.StopTimer()
	cancel()
	wg.Wait()

	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) / 1000
	}
	expected := float64(published.Load() * int64(clients))
	b.ReportMetric(float64(published.Load())/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(delivered.Load())/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(100*float64(delivered.Load())/expected, "%delivered")
	b.ReportMetric(float64(closedEarly.Load()), "closed_slow")
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
	b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/float64(clients)/1024, "KiB/client")
}

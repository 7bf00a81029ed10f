// Package bench holds the harnesses behind `agentplane bench`: each starts a
// real server in-process with fake agents on loopback, drives it, and
// reports what happened from the agents' side and the store's.
package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agentplane/agentplane/internal/app"
	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/config"
	"github.com/agentplane/agentplane/internal/cron"
	"github.com/agentplane/agentplane/internal/registry"
	"github.com/agentplane/agentplane/internal/store"
)

// SchedulerOptions shape one scheduler benchmark.
type SchedulerOptions struct {
	DatabaseURL   string // empty: SQLite in a temporary directory
	Workspaces    int
	PerWorkspace  int
	Cron          string
	MaxConcurrent int
	ReplyDelay    time.Duration
	HungFraction  float64       // share of workspaces whose agent never answers
	RunTimeout    time.Duration // the schedules' timeout (what ends a hung call)
	Duration      time.Duration // the measured window of slots
	Log           io.Writer     // progress lines
}

// SchedulerResult is what the harness saw.
type SchedulerResult struct {
	SlotsDue, Fired, Skipped, Missed, Duplicated, Unaccounted int
	// Lateness from the nominal slot to the agent receiving the message,
	// over the fired slots of healthy agents (and of all agents).
	P50, P99, Max       time.Duration
	AllP99              time.Duration
	FiresPerSecond      float64
	CPUSeconds          float64
	CPUPercent          float64
	MaxRSSMB            float64
	SetupTime, Measured time.Duration
}

// receipt is one message an agent received.
type receipt struct {
	schedule string
	slot     time.Time
	at       time.Time
	hung     bool
}

type fakeAgents struct {
	srv   *http.Server
	url   string
	delay time.Duration
	mu    sync.Mutex
	got   []receipt
	hung  map[string]bool
}

func (f *fakeAgents) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	var env struct {
		ID     json.RawMessage
		Params struct {
			Message struct {
				Metadata struct {
					ScheduleID string `json:"schedule_id"`
					SlotTime   string `json:"slot_time"`
				}
			}
		}
	}
	_ = json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&env)
	ws := strings.TrimPrefix(r.URL.Path, "/a/")
	slot, _ := time.Parse(time.RFC3339, env.Params.Message.Metadata.SlotTime)
	f.mu.Lock()
	hung := f.hung[ws]
	f.got = append(f.got, receipt{schedule: env.Params.Message.Metadata.ScheduleID, slot: slot, at: at, hung: hung})
	f.mu.Unlock()
	if hung {
		<-r.Context().Done()
		return
	}
	if f.delay > 0 {
		t := time.NewTimer(f.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"kind":"message","role":"agent","parts":[{"kind":"text","text":"done"}]}}`, env.ID)
}

func rusage() (cpu float64, maxRSSMB float64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	cpu = float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
	return cpu, float64(ru.Maxrss) / 1024 // Linux reports KiB
}

// RunScheduler runs one scheduler benchmark.
func RunScheduler(ctx context.Context, o SchedulerOptions) (SchedulerResult, error) {
	var res SchedulerResult
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	cs, err := cron.Parse(o.Cron, cron.Options{})
	if err != nil {
		return res, fmt.Errorf("--cron: %w", err)
	}
	setupStart := time.Now()

	// Fake agents: one loopback server serves every workspace at /a/<id>.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	agents := &fakeAgents{url: "http://" + ln.Addr().String(), delay: o.ReplyDelay, hung: map[string]bool{}}
	agents.srv = &http.Server{Handler: agents, ReadHeaderTimeout: 10 * time.Second}
	go agents.srv.Serve(ln)
	defer agents.srv.Close()

	// The server, in-process, on its own loopback port.
	dir, err := os.MkdirTemp("", "agentplane-bench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg := config.Register(fs, config.ScopeServe)
	args := []string{"--data-dir", dir, "--listen", "127.0.0.1:0", "--allow-private-agents", "--heartbeat-ttl", "24h",
		"--admin-token", "bench-admin-token-0123456789", "--shutdown-grace", "10s"}
	if o.DatabaseURL != "" {
		args = append(args, "--database-url", o.DatabaseURL, "--secret-key", strings.Repeat("ab", 32))
	}
	if err := config.Parse(fs, args, []string{}); err != nil {
		return res, err
	}
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	a, err := app.New(sctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), app.Options{Out: io.Discard})
	if err != nil {
		stop()
		return res, err
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(sctx) }()
	defer func() { stop(); <-done }()
	<-a.Migrated()

	hungEvery := 0
	if o.HungFraction > 0 {
		hungEvery = int(1 / o.HungFraction)
	}
	spec, _ := json.Marshal(map[string]any{"cron_expr": o.Cron, "prompt": "bench", "timeout": o.RunTimeout.String()})
	var schedules []string
	for i := range o.Workspaces {
		max := o.MaxConcurrent
		c, err := a.Registry.Create(ctx, "admin:bench", registry.CreateInput{Name: fmt.Sprintf("bench-%d", i), MaxConcurrentTasks: &max})
		if err != nil {
			return res, fmt.Errorf("create workspace: %w", err)
		}
		id := c.Workspace.ID
		if hungEvery > 0 && i%hungEvery == 0 {
			agents.hung[id] = true
		}
		p := &auth.Principal{Kind: auth.KindWorkspace, WorkspaceID: id}
		if _, err := a.Registry.Register(ctx, registry.Caller{Principal: p}, registry.RegisterInput{URL: agents.url + "/a/" + id}); err != nil {
			return res, fmt.Errorf("register workspace: %w", err)
		}
		for j := range o.PerWorkspace {
			body := strings.Replace(string(spec), "{", fmt.Sprintf(`{"name":"s%d",`, j), 1)
			v, err := a.Schedules.Create(ctx, "admin:bench", id, []byte(body))
			if err != nil {
				return res, fmt.Errorf("create schedule: %w", err)
			}
			schedules = append(schedules, v.ID)
		}
		if (i+1)%1000 == 0 {
			logf("created %d workspaces", i+1)
		}
	}
	res.SetupTime = time.Since(setupStart)

	// The window: slots in [from, to).
	from, _ := cs.Next(time.Now().Add(time.Second))
	to := from.Add(o.Duration)
	logf("setup %s; measuring slots from %s to %s", res.SetupTime.Round(time.Millisecond), from.Format(time.TimeOnly), to.Format(time.TimeOnly))
	time.Sleep(time.Until(from))
	cpu0, _ := rusage()
	time.Sleep(time.Until(to))
	cpu1, maxRSS := rusage()
	res.Measured = to.Sub(from)
	// Let the window's last runs finish (a hung one ends at its timeout).
	settle := o.ReplyDelay + 2*time.Second
	if hungEvery > 0 {
		settle = max(settle, o.RunTimeout+5*time.Second)
	}
	logf("window over; settling for %s", settle)
	time.Sleep(settle)

	// Slots due in the window, per schedule.
	perSchedule := 0
	for t := from.Add(-time.Nanosecond); ; {
		n, ok := cs.Next(t)
		if !ok || !n.Before(to) {
			break
		}
		perSchedule++
		t = n
	}
	res.SlotsDue = perSchedule * len(schedules)

	agents.mu.Lock()
	got := append([]receipt(nil), agents.got...)
	agents.mu.Unlock()
	seen := map[string]int{}
	var lat, all []time.Duration
	for _, r := range got {
		if r.slot.Before(from) || !r.slot.Before(to) {
			continue
		}
		key := r.schedule + "@" + r.slot.Format(time.RFC3339)
		seen[key]++
		if seen[key] > 1 {
			res.Duplicated++
			continue
		}
		res.Fired++
		d := r.at.Sub(r.slot)
		all = append(all, d)
		if !r.hung {
			lat = append(lat, d)
		}
	}
	// Skipped and missed from the store's history.
	for _, sid := range schedules {
		runs, err := a.Store.ListRuns(ctx, store.RunFilter{ScheduleID: sid, Limit: 1000})
		if err != nil {
			return res, err
		}
		for _, r := range runs {
			if r.SlotTime.Before(from) || !r.SlotTime.Before(to) {
				continue
			}
			switch r.Status {
			case store.RunSkipped:
				res.Skipped++
			case store.RunMissed:
				res.Missed += r.MissedCount
			}
		}
	}
	res.Unaccounted = res.SlotsDue - res.Fired - res.Skipped - res.Missed
	pct := func(ds []time.Duration, p float64) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[int(float64(len(ds)-1)*p)]
	}
	res.P50, res.P99, res.AllP99 = pct(lat, 0.5), pct(lat, 0.99), pct(all, 0.99)
	if len(lat) > 0 {
		res.Max = lat[len(lat)-1]
	}
	res.FiresPerSecond = float64(res.Fired) / res.Measured.Seconds()
	res.CPUSeconds = cpu1 - cpu0
	res.CPUPercent = 100 * res.CPUSeconds / res.Measured.Seconds()
	res.MaxRSSMB = maxRSS
	return res, nil
}

// Print writes the result as the table row docs/performance.md uses.
func (r SchedulerResult) Print(w io.Writer) {
	fmt.Fprintf(w, "slots due %d, fired %d, skipped %d, missed %d, duplicated %d, unaccounted %d\n",
		r.SlotsDue, r.Fired, r.Skipped, r.Missed, r.Duplicated, r.Unaccounted)
	fmt.Fprintf(w, "lateness slot→agent (healthy agents): p50 %s, p99 %s, max %s; p99 all agents %s\n",
		ms(r.P50), ms(r.P99), ms(r.Max), ms(r.AllP99))
	fmt.Fprintf(w, "fires/s %.1f over %s; CPU %.1f s (%.0f%% of one core), max RSS %.0f MB; setup %s\n",
		r.FiresPerSecond, r.Measured, r.CPUSeconds, r.CPUPercent, r.MaxRSSMB, r.SetupTime.Round(time.Millisecond))
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + " ms"
}

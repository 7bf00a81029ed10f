package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/supervise"
)

// Loop settings.
const (
	// MonitorInterval is the liveness monitor's beat: it wakes at least this
	// often, so a missed TTL is detected within a second.
	MonitorInterval = time.Second
	monitorBatch    = 500
	// SweepInterval is how often the health sweep probes every agent card.
	SweepInterval   = 30 * time.Second
	probeTimeout    = 5 * time.Second
	probeParallel   = 16
	sweepPage       = 200
	maxCardResponse = 1 << 20
)

// RunMonitor marks workspaces offline when their heartbeat is older than the
// TTL, judged by store time. It sleeps until the next heartbeat can expire,
// and at most MonitorInterval. Run it under supervise as "liveness-monitor".
func (s *Service) RunMonitor(ctx context.Context, h *supervise.Heart) error {
	timer := s.clock.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C():
		}
		wait, err := s.monitorPass(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("liveness monitor: %w", err)
		}
		h.Beat()
		timer.Reset(wait)
	}
}

// monitorPass marks expired workspaces offline and returns how long to sleep.
func (s *Service) monitorPass(ctx context.Context) (time.Duration, error) {
	now, err := s.store.Now(ctx)
	if err != nil {
		return 0, err
	}
	for {
		expired, err := s.store.ExpiredHeartbeats(ctx, now.Add(-s.ttl), monitorBatch)
		if err != nil {
			return 0, err
		}
		for _, w := range expired {
			if err := s.markOffline(ctx, w.ID); err != nil {
				return 0, err
			}
		}
		if len(expired) < monitorBatch {
			break
		}
	}
	oldest, err := s.store.OldestHeartbeat(ctx)
	if err != nil {
		return 0, err
	}
	wait := MonitorInterval
	if !oldest.IsZero() {
		if d := oldest.Add(s.ttl).Sub(now) + time.Millisecond; d < wait {
			wait = max(d, 10*time.Millisecond)
		}
	}
	return wait, nil
}

// markOffline applies online/degraded → offline once, even if several
// replicas' monitors see the same expiry: the CAS lets one win, and the loser
// re-reads a row that is no longer expired.
func (s *Service) markOffline(ctx context.Context, id string) error {
	_, err := s.update(ctx, id, func(tx store.Tx, w *store.Workspace, now time.Time) (bool, error) {
		if (w.Status != store.StatusOnline && w.Status != store.StatusDegraded) || now.Sub(w.LastHeartbeatAt) <= s.ttl {
			return false, nil
		}
		w.Status, w.UpdatedBy = store.StatusOffline, "system:liveness-monitor"
		return true, emit(ctx, tx, "WORKSPACE_OFFLINE", *w, "system:liveness-monitor",
			map[string]any{"last_heartbeat_at": w.LastHeartbeatAt})
	})
	return err
}

// Prober fetches agent cards; production passes the netguard's client.
type Prober interface {
	Do(req *http.Request) (*http.Response, error)
}

// RunSweep probes every online or degraded workspace's agent card each
// SweepInterval: three consecutive failures add the agent_card_unreachable
// reason, a success removes it. It beats after every page of probes. Run it
// under supervise as "health-sweep" with an interval of SweepInterval.
func (s *Service) RunSweep(ctx context.Context, h *supervise.Heart, client Prober) error {
	timer := s.clock.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C():
		}
		if err := s.sweepPass(ctx, h, client); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("health sweep: %w", err)
		}
		h.Beat()
		timer.Reset(SweepInterval)
	}
}

func (s *Service) sweepPass(ctx context.Context, h *supervise.Heart, client Prober) error {
	after := ""
	for {
		page, err := s.store.ProbeTargets(ctx, after, sweepPage)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		results := make([]bool, len(page))
		sem := make(chan struct{}, probeParallel)
		var wg sync.WaitGroup
		for i, w := range page {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				results[i] = probeCard(ctx, client, w.URL)
			}()
		}
		wg.Wait()
		for i, w := range page {
			if err := s.recordProbe(ctx, w.ID, results[i]); err != nil {
				return err
			}
		}
		h.Beat()
		after = page[len(page)-1].ID
		if len(page) < sweepPage {
			return nil
		}
	}
}

// probeCard fetches /.well-known/agent-card.json, falling back to
// /.well-known/agent.json, and succeeds on a 2xx JSON object.
func probeCard(ctx context.Context, client Prober, base string) bool {
	base = strings.TrimRight(base, "/")
	for _, path := range []string{"/.well-known/agent-card.json", "/.well-known/agent.json"} {
		ok, notFound := probeOnce(ctx, client, base+path)
		if ok {
			return true
		}
		if !notFound {
			return false
		}
	}
	return false
}

func probeOnce(ctx context.Context, client Prober, url string) (ok, notFound bool) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, false
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return false, false
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return false, true
	}
	if resp.StatusCode/100 != 2 {
		return false, false
	}
	var card map[string]json.RawMessage
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxCardResponse)).Decode(&card); err != nil {
		return false, false
	}
	return true, false
}

func (s *Service) recordProbe(ctx context.Context, id string, ok bool) error {
	_, err := s.update(ctx, id, func(tx store.Tx, w *store.Workspace, now time.Time) (bool, error) {
		if w.Status != store.StatusOnline && w.Status != store.StatusDegraded {
			return false, nil // paused, offline or removed meanwhile
		}
		// Several replicas sweep the same workspaces: count one probe per
		// half sweep interval, so "three consecutive failures" means three
		// sweeps, not three replicas.
		if !w.LastProbeAt.IsZero() && now.Sub(w.LastProbeAt) < SweepInterval/2 {
			return false, nil
		}
		w.LastProbeAt = now
		before := *w
		if ok {
			w.ProbeFailures = 0
		} else {
			w.ProbeFailures++
		}
		w.DegradedReasons = withReason(w.DegradedReasons, ReasonCardUnreachable, w.ProbeFailures >= ProbeFailuresToDegrade)
		w.Status = liveStatus(w.DegradedReasons)
		w.UpdatedBy = "system:health-sweep"
		if ev := transitionEvent(before.Status, w.Status, before.DegradedReasons, w.DegradedReasons); ev != "" {
			return true, emit(ctx, tx, ev, *w, "system:health-sweep", nil)
		}
		return true, nil
	})
	if errors.Is(err, errRetry) {
		return nil
	}
	return err
}

// MonitorOnce runs one pass of the liveness monitor now and returns how long
// the loop would sleep after it. Tests drive the monitor with it on a fake
// clock; RunMonitor is this in a loop.
func (s *Service) MonitorOnce(ctx context.Context) (time.Duration, error) {
	return s.monitorPass(ctx)
}

// SweepOnce probes every agent card once now, beating h after each page.
func (s *Service) SweepOnce(ctx context.Context, h *supervise.Heart, client Prober) error {
	return s.sweepPass(ctx, h, client)
}

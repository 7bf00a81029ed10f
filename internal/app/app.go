// Package app wires agentplane together: it opens the store, builds every
// component with its collaborators (no package-level state anywhere), starts
// the supervised loops and the HTTP servers, and shuts them down in order.
//
// It is the only place that knows every component; it holds no rules.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/agentplane/agentplane/internal/activity"
	"github.com/agentplane/agentplane/internal/api"
	"github.com/agentplane/agentplane/internal/audit"
	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/clock"
	"github.com/agentplane/agentplane/internal/config"
	"github.com/agentplane/agentplane/internal/events"
	"github.com/agentplane/agentplane/internal/gateway"
	"github.com/agentplane/agentplane/internal/metrics"
	"github.com/agentplane/agentplane/internal/netguard"
	"github.com/agentplane/agentplane/internal/registry"
	"github.com/agentplane/agentplane/internal/scheduler"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/store/pgstore"
	"github.com/agentplane/agentplane/internal/store/sqlitestore"
	"github.com/agentplane/agentplane/internal/supervise"
)

// Beat intervals of the subsystems started here.
const (
	RelayInterval   = time.Second
	ListenInterval  = 5 * time.Second
	MigrateInterval = 30 * time.Second
)

// Options are test hooks; production passes the zero value.
type Options struct {
	// Clock replaces the wall clock for loops (and store time when StoreNow is set).
	Clock clock.Clock
	// StoreNow replaces database time.
	StoreNow func() time.Time
	// Listener, when set, is used instead of listening on cfg.Listen.
	Listener net.Listener
	// Out receives the one-time bootstrap token banner (stdout when nil).
	Out io.Writer
	// Resolver and Dial replace the agent dialer's DNS and connect (tests).
	Resolver netguard.Resolver
	Dial     netguard.DialFunc
	// RelayInterval replaces how often the relay reads without a wake-up
	// (tests lengthen it to prove that wake-ups travel between replicas).
	RelayInterval time.Duration
}

// App is a running server.
type App struct {
	cfg   *config.Config
	log   *slog.Logger
	opts  Options
	clock clock.Clock

	Store     store.Store
	Live      *supervise.Registry
	Sup       *supervise.Supervisor
	Hub       *events.Hub
	Metrics   *metrics.Metrics
	Auth      *auth.Service
	Registry  *registry.Service
	Activity  *activity.Service
	Retention *activity.Retention
	Redis     *events.RedisRelay
	Guard     *netguard.Guard
	// Gateway is the A2A gateway (also the scheduler's and channels' way
	// to message agents); Capacity its lease manager.
	Gateway  *gateway.Gateway
	Capacity *gateway.Capacity
	// Engine is the scheduler; Schedules its API side.
	Engine    *scheduler.Engine
	Schedules *scheduler.Service

	listener net.Listener
	server   *http.Server
	metricsL net.Listener
	metricsS *http.Server
	migrated chan struct{}
}

// OpenStore opens the back end cfg selects.
func OpenStore(ctx context.Context, cfg *config.Config, opts store.Options) (store.Store, error) {
	if cfg.DatabaseURL != "" {
		return pgstore.Open(ctx, cfg.DatabaseURL, opts)
	}
	return sqlitestore.Open(ctx, cfg.DataDir, opts)
}

// New builds the server and binds its listeners; Run starts it.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, opts Options) (*App, error) {
	a := &App{cfg: cfg, log: log, opts: opts, clock: opts.Clock, migrated: make(chan struct{})}
	if a.clock == nil {
		a.clock = clock.Real{}
	}
	a.Live = supervise.NewRegistry(a.clock)
	a.Sup = supervise.New(a.clock, log, a.Live)
	a.Metrics = metrics.New(a.Live)

	var (
		hub   *events.Hub
		redis *events.RedisRelay
	)
	st, err := OpenStore(ctx, cfg, store.Options{Now: opts.StoreNow, OnCommit: func(id int64) {
		hub.Notify(id)
		if redis != nil {
			redis.Committed(id)
		}
	}})
	if err != nil {
		return nil, err
	}
	a.Store = st
	relayEvery := RelayInterval
	if opts.RelayInterval > 0 {
		relayEvery = opts.RelayInterval
	}
	hub = events.NewHub(st, a.clock, log.With("subsystem", "relay"), relayEvery)
	a.Hub = hub
	if cfg.RedisURL != "" {
		if redis, err = events.NewRedisRelay(cfg.RedisURL, hub, log.With("subsystem", "relay-redis"), ListenInterval); err != nil {
			st.Close()
			return nil, err
		}
		a.Redis = redis
	}
	if s, ok := st.(*sqlitestore.Store); ok {
		p, err := s.Pragmas(ctx)
		if err != nil {
			st.Close()
			return nil, err
		}
		log.Info("sqlite store", "path", s.Path(), "journal_mode", p["journal_mode"], "busy_timeout_ms", p["busy_timeout"],
			"synchronous", p["synchronous"], "foreign_keys", p["foreign_keys"], "reader_query_only", p["query_only"])
		if p["journal_mode"] != "wal" {
			st.Close()
			return nil, fmt.Errorf("sqlite: journal_mode is %q, not wal (is the data dir on a filesystem without shared memory?)", p["journal_mode"])
		}
	} else {
		log.Info("postgres store", "url", redactURL(cfg.DatabaseURL))
	}

	rec := audit.NewRecorder(st, log)
	ips := auth.NewClientIP(cfg.TrustedProxies)
	a.Auth = auth.NewService(auth.Options{
		Store: st, Clock: a.clock, Log: log, Audit: rec, ClientIP: ips, AllowedOrigins: cfg.AllowedOrigins,
	})
	a.Guard = netguard.New(netguard.Options{
		AllowPrivate: cfg.AllowPrivateAgents, Resolver: opts.Resolver, Dial: opts.Dial,
		OnRefuse: func(host string, ip netip.Addr, reason string) {
			log.Warn("agent address refused", "host", audit.Quote(host), "ip", ip.String(), "reason", reason)
		},
	})
	a.Registry = registry.New(registry.Options{
		Store: st, Clock: a.clock, Log: log, Audit: rec, Hub: hub, URLs: a.Guard, HeartbeatTTL: cfg.HeartbeatTTL,
	})
	a.Activity = activity.New(st, log, rec, cfg.ActivityBodyMax)
	a.Retention = activity.NewRetention(st, a.clock, log.With("subsystem", "retention"), cfg.Retention)
	a.Capacity = gateway.NewCapacity(st, a.clock, log.With("subsystem", "leases"), "")
	gw := gateway.New(gateway.Deps{
		Store: st, CanTalk: a.Registry.CanTalk, Client: a.Guard.Client(0), Clock: a.clock, Log: log, Audit: rec,
		Capacity: a.Capacity,
	})
	a.Gateway = gw
	a.Engine = scheduler.NewEngine(scheduler.Options{
		Store: st, Clock: a.clock, Log: log.With("subsystem", "scheduler"), Gateway: gw, Holder: a.Capacity.Holder(), RunHistory: cfg.RunHistory,
		Metrics: a.Metrics,
	})
	a.Schedules = scheduler.NewService(st, a.Engine)
	srv := api.New(api.Deps{
		Store: st, Live: a.Live, Metrics: a.Metrics, Log: log, Authn: a.Auth, Auth: a.Auth,
		Registry: a.Registry, Activity: a.Activity, Hub: hub, Gateway: gw, ClientIP: ips, Audit: rec, MaxBody: cfg.MaxBodyBytes,
		Schedules: a.Schedules, Started: a.migrated,
	})
	handler, err := srv.Handler()
	if err != nil {
		st.Close()
		return nil, err
	}
	a.server = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	a.listener = opts.Listener
	if a.listener == nil {
		if a.listener, err = net.Listen("tcp", cfg.Listen); err != nil {
			st.Close()
			return nil, fmt.Errorf("--listen %s: %w", cfg.Listen, err)
		}
	}
	if cfg.MetricsListen != "" {
		if a.metricsL, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			a.listener.Close()
			st.Close()
			return nil, fmt.Errorf("--metrics-listen %s: %w", cfg.MetricsListen, err)
		}
		a.metricsS = &http.Server{Handler: a.Metrics.Handler(), ReadHeaderTimeout: 10 * time.Second}
	}
	return a, nil
}

// Addr is the address the API listens on.
func (a *App) Addr() string { return a.listener.Addr().String() }

// MetricsAddr is the separate metrics address, empty when not configured.
func (a *App) MetricsAddr() string {
	if a.metricsL == nil {
		return ""
	}
	return a.metricsL.Addr().String()
}

// Migrated is closed once the schema is current and the loops have started.
func (a *App) Migrated() <-chan struct{} { return a.migrated }

// Run serves until ctx is cancelled, then shuts down gracefully: stop
// accepting, let in-flight requests finish within --shutdown-grace, stop the
// loops, close the store.
func (a *App) Run(ctx context.Context) error {
	loopCtx, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLoops()

	serveErr := make(chan error, 2)
	go func() { serveErr <- a.server.Serve(a.listener) }()
	if a.metricsS != nil {
		go func() { serveErr <- a.metricsS.Serve(a.metricsL) }()
	}
	a.log.Info("listening", "addr", a.Addr(), "metrics_addr", a.MetricsAddr(), "store", a.Store.Dialect())

	// Migration is a supervised one-shot: it retries with backoff while the
	// database is unreachable (/readyz says 503 meanwhile) and returns cleanly
	// once the schema is current, then starts the loops that need it.
	var once sync.Once
	relayEvery := a.Hub.Interval()
	a.Sup.Go(loopCtx, "migrate", MigrateInterval, func(ctx context.Context, h *supervise.Heart) error {
		if err := a.Store.Migrate(ctx); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		bootstrap, err := a.Auth.EnsureAdminTokens(ctx, a.cfg.AdminToken)
		if err != nil {
			return fmt.Errorf("admin tokens: %w", err)
		}
		if bootstrap != "" {
			a.printBootstrap(bootstrap)
		}
		h.Beat()
		if err := a.Hub.Prime(ctx); err != nil {
			return err
		}
		once.Do(func() {
			a.log.Info("schema current; starting subsystems")
			a.Sup.Go(loopCtx, "relay", relayEvery, a.Hub.Run)
			if a.Redis != nil {
				// --redis-url: replicas wake each other through Redis pub/sub.
				a.Sup.Go(loopCtx, "relay-redis", ListenInterval, a.Redis.Run)
			} else if pg, ok := a.Store.(*pgstore.Store); ok {
				// Replicas wake each other's relays through LISTEN/NOTIFY.
				a.Sup.Go(loopCtx, "relay-listener", ListenInterval, func(ctx context.Context, h *supervise.Heart) error {
					return pg.Listen(ctx, ListenInterval, func() { a.Hub.Notify(0) }, h.Beat)
				})
			}
			a.Sup.Go(loopCtx, "liveness-monitor", registry.MonitorInterval, a.Registry.RunMonitor)
			a.Sup.Go(loopCtx, "retention", activity.RetentionInterval, a.Retention.Run)
			a.Sup.Go(loopCtx, "lease-renewal", gateway.LeaseRenew, a.Capacity.RunRenewal)
			a.Sup.Go(loopCtx, "scheduler", scheduler.BeatInterval, a.Engine.RunClaims)
			a.Sup.Go(loopCtx, "scheduler-workers", scheduler.BeatInterval, a.Engine.RunWorkers)
			a.Sup.Go(loopCtx, "scheduler-leases", scheduler.RunLeaseRenew, a.Engine.RunLeases)
			// A schedule created or changed on another replica reaches this
			// one's claim loop through the event relay at once.
			a.Sup.Go(loopCtx, "scheduler-wake", scheduler.BeatInterval, func(ctx context.Context, h *supervise.Heart) error {
				return a.Engine.FollowChanges(ctx, h, a.Hub)
			})
			probe := a.Guard.Client(0)
			a.Sup.Go(loopCtx, "health-sweep", registry.SweepInterval, func(ctx context.Context, h *supervise.Heart) error {
				return a.Registry.RunSweep(ctx, h, probe)
			})
			close(a.migrated)
		})
		return nil
	})

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			runErr = fmt.Errorf("http server: %w", err)
		}
	}

	a.log.Info("shutting down", "grace", a.cfg.ShutdownGrace)
	graceCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownGrace)
	defer cancel()
	if err := a.server.Shutdown(graceCtx); err != nil {
		a.log.Warn("in-flight requests did not finish within the grace period", "err", err)
		a.server.Close()
	}
	if a.metricsS != nil {
		a.metricsS.Close()
	}
	// Runs first: stop claiming, hand back runs still waiting for capacity,
	// let runs talking to their agents finish — while the loops that renew
	// this replica's run and capacity leases still run.
	a.Engine.Drain(graceCtx)
	stopLoops()
	a.Hub.Close()
	loopsDone := make(chan struct{})
	go func() { a.Sup.Wait(); close(loopsDone) }()
	select {
	case <-loopsDone:
	case <-graceCtx.Done():
		a.log.Warn("background loops did not stop within the grace period")
	}
	if a.Redis != nil {
		_ = a.Redis.Close()
	}
	if err := a.Store.Close(); err != nil {
		a.log.Warn("close store", "err", err)
	}
	a.log.Info("stopped")
	return runErr
}

// printBootstrap shows the bootstrap admin token once, on stdout, with the
// canvas URL. Only the replica whose insert created the token prints it.
func (a *App) printBootstrap(token string) {
	out := a.opts.Out
	if out == nil {
		out = os.Stdout
	}
	fmt.Fprintf(out, `
================================================================
 agentplane created the admin token "bootstrap" (shown only once):

   %s

 Server: http://%s/   (the canvas will log in with this token)
 API:    curl -H "Authorization: Bearer $TOKEN" http://%s/workspaces
 Keep it secret; mint named tokens with POST /admin/tokens.
================================================================

`, token, a.Addr(), a.Addr())
	a.log.Info("bootstrap admin token created and printed on stdout")
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}

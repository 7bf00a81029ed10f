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
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/agentplane/agentplane/internal/api"
	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/clock"
	"github.com/agentplane/agentplane/internal/config"
	"github.com/agentplane/agentplane/internal/events"
	"github.com/agentplane/agentplane/internal/metrics"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/store/pgstore"
	"github.com/agentplane/agentplane/internal/store/sqlitestore"
	"github.com/agentplane/agentplane/internal/supervise"
)

// Beat intervals of the subsystems started here.
const (
	RelayInterval   = time.Second
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
}

// App is a running server.
type App struct {
	cfg   *config.Config
	log   *slog.Logger
	opts  Options
	clock clock.Clock

	Store   store.Store
	Live    *supervise.Registry
	Sup     *supervise.Supervisor
	Hub     *events.Hub
	Metrics *metrics.Metrics

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

	var hub *events.Hub
	st, err := OpenStore(ctx, cfg, store.Options{Now: opts.StoreNow, OnCommit: func(id int64) { hub.Notify(id) }})
	if err != nil {
		return nil, err
	}
	a.Store = st
	hub = events.NewHub(st, a.clock, log.With("subsystem", "relay"), RelayInterval)
	a.Hub = hub
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

	if cfg.AdminToken == "" {
		log.Warn("no --admin-token given: admin routes refuse every request until one is set")
	}
	srv := api.New(api.Deps{
		Store: st, Live: a.Live, Metrics: a.Metrics, Log: log,
		Authn: auth.NewStaticAdmin(cfg.AdminToken), MaxBody: cfg.MaxBodyBytes,
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
	a.Sup.Go(loopCtx, "migrate", MigrateInterval, func(ctx context.Context, h *supervise.Heart) error {
		if err := a.Store.Migrate(ctx); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		h.Beat()
		once.Do(func() {
			a.log.Info("schema current; starting subsystems")
			a.Sup.Go(loopCtx, "relay", RelayInterval, a.Hub.Run)
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
	stopLoops()
	a.Hub.Close()
	loopsDone := make(chan struct{})
	go func() { a.Sup.Wait(); close(loopsDone) }()
	select {
	case <-loopsDone:
	case <-graceCtx.Done():
		a.log.Warn("background loops did not stop within the grace period")
	}
	if err := a.Store.Close(); err != nil {
		a.log.Warn("close store", "err", err)
	}
	a.log.Info("stopped")
	return runErr
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}

// Command agentplane is the control plane for teams of AI agents: one binary
// with the subcommands serve, migrate and version. This file only parses flags
// and wires; everything else lives in internal/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
	_ "time/tzdata" // cron and next_runs must know every IANA zone, whatever the host has

	"github.com/agentplane/agentplane/internal/app"
	"github.com/agentplane/agentplane/internal/buildinfo"
	"github.com/agentplane/agentplane/internal/config"
	"github.com/agentplane/agentplane/internal/store"
)

const usage = `agentplane — a control plane for teams of AI agents.

Usage:
  agentplane <command> [flags]

Commands:
  serve     run the server (HTTP API, scheduler, event streams) on SQLite by default, or PostgreSQL with --database-url
  migrate   apply pending database migrations and exit (serve also migrates at start)
  agent     run the reference A2A agent: echoes, or runs --exec CMD per message; registers and heartbeats with --platform
  bench     run a benchmark harness (bench scheduler): a server, fake agents and a report
  version   print the version

Run 'agentplane <command> --help' for the flags of a command. Every flag can also
be set with an AGENTPLANE_* environment variable (--heartbeat-ttl → AGENTPLANE_HEARTBEAT_TTL).
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "migrate":
		return migrate(args[1:], stdout, stderr)
	case "agent":
		return runAgent(args[1:], stdout, stderr)
	case "bench":
		return benchCmd(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, buildinfo.String())
		return 0
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "agentplane: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// parseFlags parses a subcommand's flags; it returns the exit code to use when
// the command must stop here (help or an error).
func parseFlags(name, synopsis, description string, scope config.Scope, args []string, stdout, stderr io.Writer) (*config.Config, int, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg := config.Register(fs, scope)
	if err := config.Parse(fs, args, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			config.Usage(stdout, fs, synopsis, description)
			return nil, 0, false
		}
		fmt.Fprintf(stderr, "agentplane %s: %v\nRun 'agentplane %s --help' for usage.\n", name, err, name)
		return nil, 2, false
	}
	validate := cfg.Validate
	if scope == config.ScopeStore {
		validate = cfg.ValidateStore
	}
	if err := validate(); err != nil {
		fmt.Fprintf(stderr, "agentplane %s: invalid configuration:\n%v\n", name, err)
		return nil, 2, false
	}
	return cfg, 0, true
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(args []string, stdout, stderr io.Writer) int {
	cfg, code, ok := parseFlags("serve", "agentplane serve [flags]",
		`Runs the agentplane server: the HTTP API, the supervised background loops and,
later, the canvas. With no flags it stores everything in SQLite under
./agentplane-data and listens on 127.0.0.1:8080. Give --database-url to use
PostgreSQL; several replicas may then share one database.

Probes: /healthz (process up), /readyz (store reachable and migrated),
/livez (every background loop beating). SIGINT/SIGTERM shut down gracefully
within --shutdown-grace.`, config.ScopeServe, args, stdout, stderr)
	if !ok {
		return code
	}
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("starting", "version", buildinfo.String(), "store", cfg.DatabaseKind())
	a, err := app.New(ctx, cfg, log, app.Options{})
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if err := a.Run(ctx); err != nil {
		log.Error("server failed", "err", err)
		return 1
	}
	return 0
}

func migrate(args []string, stdout, stderr io.Writer) int {
	cfg, code, ok := parseFlags("migrate", "agentplane migrate [flags]",
		`Applies pending schema migrations to the store and exits. Safe to run while
other replicas start: PostgreSQL migrations hold an advisory lock and SQLite
migrations run in one immediate transaction. 'serve' also migrates at start.`,
		config.ScopeStore, args, stdout, stderr)
	if !ok {
		return code
	}
	log := newLogger(cfg, stderr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	st, err := app.OpenStore(ctx, cfg, store.Options{})
	if err != nil {
		log.Error("cannot open store", "err", err)
		return 1
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		log.Error("migration failed", "err", err)
		return 1
	}
	if err := st.Ready(ctx); err != nil {
		log.Error("store not ready after migration", "err", err)
		return 1
	}
	log.Info("schema is current", "store", st.Dialect())
	return 0
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/agentplane/agentplane/internal/bench"
)

const benchUsage = `Usage: agentplane bench scheduler [flags]

Starts a server in this process (SQLite in a temporary directory, or
--database-url), fake agents on loopback (one HTTP server for every
workspace), creates the workspaces and schedules, waits for the next slot,
measures a window of slots and reports: slots due, fired, skipped, missed,
duplicated; lateness from the nominal slot to the agent receiving the
message (p50/p99/max); fires/s; CPU and max RSS of the whole process (the
load generator included).

Examples (the targets of the scheduler issue):
  agentplane bench scheduler --workspaces 20 --schedules-per-workspace 10 --cron '* * * * *' \
      --max-concurrent 10 --reply-delay 2s --duration 3m
  agentplane bench scheduler --workspaces 10000 --schedules-per-workspace 1 --cron '*/10 * * * * *' \
      --max-concurrent 1 --reply-delay 0 --duration 1m

Flags:
`

func benchCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "scheduler" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, benchUsage)
			return 0
		}
		fmt.Fprint(stderr, "agentplane bench: name a benchmark: scheduler\n\n"+benchUsage)
		return 2
	}
	fs := flag.NewFlagSet("bench scheduler", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o bench.SchedulerOptions
	fs.StringVar(&o.DatabaseURL, "database-url", "", "PostgreSQL URL (postgres://…); empty runs on SQLite in a temporary directory")
	fs.IntVar(&o.Workspaces, "workspaces", 20, "workspaces, each with its own fake agent")
	fs.IntVar(&o.PerWorkspace, "schedules-per-workspace", 10, "schedules per workspace")
	fs.StringVar(&o.Cron, "cron", "* * * * *", "cron expression of every schedule")
	fs.IntVar(&o.MaxConcurrent, "max-concurrent", 10, "max_concurrent_tasks of every workspace")
	fs.DurationVar(&o.ReplyDelay, "reply-delay", 2*time.Second, "how long each fake agent takes to answer")
	fs.Float64Var(&o.HungFraction, "hung-fraction", 0, "share of workspaces whose agent never answers (their runs end at --timeout)")
	fs.DurationVar(&o.RunTimeout, "timeout", 5*time.Minute, "the schedules' run timeout")
	fs.DurationVar(&o.Duration, "duration", 3*time.Minute, "the window of slots measured")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, benchUsage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(stderr, "agentplane bench scheduler: %v\nRun 'agentplane bench scheduler --help' for usage.\n", err)
		return 2
	}
	switch {
	case o.Workspaces < 1 || o.PerWorkspace < 1:
		fmt.Fprintln(stderr, "agentplane bench scheduler: --workspaces and --schedules-per-workspace must be at least 1")
		return 2
	case o.MaxConcurrent < 1:
		fmt.Fprintln(stderr, "agentplane bench scheduler: --max-concurrent must be at least 1")
		return 2
	case o.HungFraction < 0 || o.HungFraction > 1:
		fmt.Fprintln(stderr, "agentplane bench scheduler: --hung-fraction must be between 0 and 1")
		return 2
	case o.Duration < time.Second || o.RunTimeout < time.Second:
		fmt.Fprintln(stderr, "agentplane bench scheduler: --duration and --timeout must be at least 1s")
		return 2
	}
	o.Log = stderr
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	res, err := bench.RunScheduler(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "agentplane bench scheduler: %v\n", err)
		return 1
	}
	res.Print(stdout)
	return 0
}

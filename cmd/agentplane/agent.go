package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/agentplane/agentplane/internal/buildinfo"
	"github.com/agentplane/agentplane/internal/config"
	"github.com/agentplane/agentplane/pkg/agent"
	"github.com/google/uuid"
)

// exitRemoved is the exit status when the platform removed the workspace:
// distinct from a crash, so that a supervisor need not restart the agent.
const exitRemoved = 3

const agentSynopsis = "agentplane agent [--platform URL --token T [--workspace ID]] [--listen ADDR] [--url PUBLIC_URL] [--exec CMD] [flags]"

const agentDescription = `Runs the reference A2A agent. It serves A2A 0.3 and 1.0 JSON-RPC (send,
stream, get, cancel) and its agent card on --listen. Without --exec it echoes
every message ("echo: <text>"); with --exec it runs 'sh -c CMD' for each
message, with the message's text on stdin, and replies with the command's
stdout (streamed line by line to streaming callers). A non-zero exit fails the
task with the command's stderr; --timeout bounds each run.

With --platform it registers with the agentplane server as the workspace of
--token, heartbeats at the interval the server asks for with its real number
of active tasks, reports finished tasks to the workspace's activity log, and
accepts only requests signed by the server's gateway (see
--require-signature). Without --platform it is a standalone A2A server.

SIGINT/SIGTERM stop it gracefully: no new tasks, running ones finish within
--shutdown-grace; a second signal stops it at once. Exit status: 0 after a
clean stop, 2 for bad flags, 3 when the platform removed the workspace, 1 for
other failures.

Example:
  agentplane agent --platform http://127.0.0.1:8080 --token "$TOKEN" --exec 'date; uptime'`

// agentEnvName is the environment variable of an agent flag:
// max-concurrent → AGENTPLANE_AGENT_MAX_CONCURRENT.
func agentEnvName(flagName string) string { return config.EnvNameWith(agentEnvPrefix, flagName) }

const agentEnvPrefix = "AGENTPLANE_AGENT_"

// agentFlags are the settings of the agent command.
type agentFlags struct {
	platform, workspace, token, listen, publicURL, exec string
	name, description                                   string
	skills                                              skillList
	maxConcurrent, maxOutput                            int
	timeout, shutdownGrace                              time.Duration
	requireSignature                                    bool
	logFormat, logLevel                                 string
	requireSet                                          bool // --require-signature given explicitly
}

// skillList is a repeatable --skill "NAME[: DESCRIPTION]".
type skillList []agent.Skill

func (s *skillList) String() string {
	var names []string
	for _, k := range *s {
		names = append(names, k.Name)
	}
	return strings.Join(names, ", ")
}

func (s *skillList) Set(v string) error {
	for _, line := range strings.Split(v, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, desc, _ := strings.Cut(line, ":")
		name, desc = strings.TrimSpace(name), strings.TrimSpace(desc)
		if name == "" {
			return fmt.Errorf("a skill needs a name: %q", line)
		}
		*s = append(*s, agent.Skill{ID: slug(name), Name: name, Description: desc})
	}
	return nil
}

// slug makes a skill id from its name: "Run audit" → "run-audit".
func slug(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimSuffix(b.String(), "-")
}

func registerAgentFlags(fs *flag.FlagSet) *agentFlags {
	f := &agentFlags{}
	fs.StringVar(&f.platform, "platform", "", "URL of the agentplane server to register with, e.g. http://127.0.0.1:8080; empty runs a standalone A2A server that registers nowhere")
	fs.StringVar(&f.token, "token", "", "the workspace's token (apw_…), shown once by POST /workspaces; required with --platform. Prefer the environment variable: command-line arguments are visible to other users of the machine")
	fs.StringVar(&f.workspace, "workspace", "", "the workspace id (uuid); optional, since the token identifies the workspace, but when given the platform checks that it matches")
	fs.StringVar(&f.listen, "listen", agent.DefaultListen, "address (host:port) the agent serves A2A and its card on; use port 0 for any free port")
	fs.StringVar(&f.publicURL, "url", "", "URL at which the platform reaches this agent, registered and published in the card (e.g. http://agent-host:8081); default http://<listen address>, with 127.0.0.1 for an unspecified host")
	fs.StringVar(&f.exec, "exec", "", "shell command run with 'sh -c' for each message: the text on stdin, stdout is the reply, a non-zero exit fails the task with stderr; empty echoes. The command is never logged or published, and it does not inherit AGENTPLANE_* variables naming a token or secret")
	fs.IntVar(&f.maxConcurrent, "max-concurrent", agent.DefaultMaxConcurrent, "most tasks run at once; further sends are refused with HTTP 503 + Retry-After and a JSON-RPC busy error (code -32000, AGENT_BUSY) instead of queueing. Set it at least to the workspace's max_concurrent_tasks")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Minute, "longest a task may run (the --exec command is killed with its process group); 0 means no limit")
	fs.IntVar(&f.maxOutput, "max-output", agent.DefaultMaxOutputBytes, "largest reply in bytes; longer output is cut and a note says so")
	fs.StringVar(&f.name, "name", "", `the agent's name in its card (default "agentplane echo agent" or "agentplane command agent")`)
	fs.StringVar(&f.description, "description", "", "the agent's description in its card (default: says what it does)")
	fs.Var(&f.skills, "skill", `a skill listed in the card, "NAME" or "NAME: DESCRIPTION"; repeat the flag for several (the environment variable holds one per line)`)
	fs.BoolVar(&f.requireSignature, "require-signature", true, "with --platform, refuse (401) requests without a valid X-Agentplane-Caller signature, so that only the platform's gateway reaches the agent; --require-signature=false still verifies signed requests. Without --platform there is no key, so it is off (and setting it is an error)")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", agent.DefaultShutdownGrace, "on SIGINT/SIGTERM, how long running tasks may take to finish before they are cancelled")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "minimum log level: debug, info, warn or error")
	return f
}

// parseAgentFlags parses args, then fills every flag not given from its
// AGENTPLANE_AGENT_* variable in env.
func parseAgentFlags(fs *flag.FlagSet, args, env []string) error {
	return config.ParsePrefixed(fs, args, env, agentEnvPrefix, "quote a --exec command with spaces")
}

func agentUsage(w io.Writer, fs *flag.FlagSet) {
	config.UsagePrefixed(w, fs, agentSynopsis, agentDescription, agentEnvPrefix)
}

// validate checks the flags; the error names each offending one.
func (f *agentFlags) validate() error {
	var errs []error
	if f.platform != "" {
		u, err := url.Parse(f.platform)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--platform: must be an http(s) URL like http://127.0.0.1:8080, got %q", f.platform))
		}
		if f.token == "" {
			errs = append(errs, fmt.Errorf("--token: required with --platform (or set %s)", agentEnvName("token")))
		}
	} else if f.requireSet && f.requireSignature {
		errs = append(errs, errors.New("--require-signature: needs --platform (the platform provides the key that verifies callers)"))
	}
	if f.workspace != "" {
		if _, err := uuid.Parse(f.workspace); err != nil {
			errs = append(errs, fmt.Errorf("--workspace: must be a workspace id (uuid), got %q", f.workspace))
		}
	}
	if _, _, err := net.SplitHostPort(f.listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen: must be host:port, got %q", f.listen))
	}
	if f.publicURL != "" {
		u, err := url.Parse(f.publicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			errs = append(errs, fmt.Errorf("--url: must be an http(s) URL without credentials, got %q", f.publicURL))
		}
	}
	if f.maxConcurrent < 1 {
		errs = append(errs, fmt.Errorf("--max-concurrent: must be at least 1, got %d", f.maxConcurrent))
	}
	if f.timeout < 0 {
		errs = append(errs, fmt.Errorf("--timeout: must not be negative, got %s", f.timeout))
	}
	if f.maxOutput < 1024 {
		errs = append(errs, fmt.Errorf("--max-output: must be at least 1024, got %d", f.maxOutput))
	}
	if f.shutdownGrace <= 0 {
		errs = append(errs, fmt.Errorf("--shutdown-grace: must be positive, got %s", f.shutdownGrace))
	}
	if f.logFormat != "text" && f.logFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format: must be text or json, got %q", f.logFormat))
	}
	var level slog.Level
	if level.UnmarshalText([]byte(f.logLevel)) != nil {
		errs = append(errs, fmt.Errorf("--log-level: must be debug, info, warn or error, got %q", f.logLevel))
	}
	return errors.Join(errs...)
}

// options turns the flags into the SDK's options.
func (f *agentFlags) options(log *slog.Logger) agent.Options {
	o := agent.Options{
		Platform: f.platform, Token: f.token, WorkspaceID: f.workspace, Listen: f.listen, URL: f.publicURL,
		MaxConcurrent: f.maxConcurrent, TaskTimeout: f.timeout, MaxOutputBytes: f.maxOutput,
		RequireSignature: f.platform != "" && f.requireSignature, ShutdownGrace: f.shutdownGrace,
		Name: f.name, Description: f.description, Skills: f.skills, Logger: log,
	}
	if v := strings.Fields(buildinfo.String()); len(v) > 1 {
		o.Version = v[1]
	}
	if f.exec == "" {
		o.Handler = agent.Echo{}
		if o.Name == "" {
			o.Name = "agentplane echo agent"
		}
		if o.Description == "" {
			o.Description = `Replies to every message with "echo: " and its text.`
		}
		if len(o.Skills) == 0 {
			o.Skills = []agent.Skill{{ID: "echo", Name: "Echo", Description: "Replies with the text it receives."}}
		}
	} else {
		o.Handler = &agent.Exec{Command: f.exec}
		if o.Name == "" {
			o.Name = "agentplane command agent"
		}
		if o.Description == "" {
			o.Description = "Runs a command for each message, with the message as its input, and replies with its output."
		}
		if len(o.Skills) == 0 {
			o.Skills = []agent.Skill{{ID: "command", Name: "Command", Description: "Runs the agent's command with the message on stdin."}}
		}
	}
	return o
}

// runAgent is the agent command: it stops gracefully on SIGINT/SIGTERM.
func runAgent(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal gets the default action: stop at once
	}()
	return agentMain(ctx, args, nil, stdout, stderr)
}

// agentMain runs the agent until ctx ends; env nil means os.Environ().
func agentMain(ctx context.Context, args, env []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := registerAgentFlags(fs)
	if env == nil {
		env = os.Environ()
	}
	if err := parseAgentFlags(fs, args, env); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			agentUsage(stdout, fs)
			return 0
		}
		fmt.Fprintf(stderr, "agentplane agent: %v\nRun 'agentplane agent --help' for usage.\n", err)
		return 2
	}
	fs.Visit(func(fl *flag.Flag) { f.requireSet = f.requireSet || fl.Name == "require-signature" })
	if _, ok := lookupEnv(env, agentEnvName("require-signature")); ok {
		f.requireSet = true
	}
	if err := f.validate(); err != nil {
		fmt.Fprintf(stderr, "agentplane agent: invalid configuration:\n%v\n", err)
		return 2
	}
	log := agentLogger(f, stderr)
	a, err := agent.New(f.options(log))
	if err != nil {
		fmt.Fprintf(stderr, "agentplane agent: %v\n", err)
		return 2
	}
	if f.platform == "" && (f.token != "" || f.workspace != "") {
		log.Warn("--token and --workspace are unused without --platform")
	}
	platform := f.platform
	if u, err := url.Parse(f.platform); err == nil {
		platform = u.Redacted()
	}
	log.Info("starting agent", "version", buildinfo.String(), "mode", map[bool]string{true: "exec", false: "echo"}[f.exec != ""],
		"platform", platform, "workspace_id", f.workspace)
	err = a.ListenAndServe(ctx)
	switch {
	case errors.Is(err, agent.ErrRemoved):
		log.Error("the platform removed this workspace; exiting")
		return exitRemoved
	case err != nil:
		log.Error("agent failed", "err", err)
		return 1
	}
	return 0
}

func lookupEnv(env []string, name string) (string, bool) {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}

func agentLogger(f *agentFlags, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(f.logLevel))
	opts := &slog.HandlerOptions{Level: level}
	if f.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

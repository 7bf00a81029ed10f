// Package config holds the server's settings (SPEC §14): every flag has an
// AGENTPLANE_* environment equivalent, a flag on the command line wins over
// the environment, and Validate names the flag that is wrong.
//
// It owns parsing and validation only; it never opens files or sockets.
package config

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"
)

// Config is the server configuration.
type Config struct {
	Listen             string
	DataDir            string
	DatabaseURL        string
	RedisURL           string
	AdminToken         string
	AllowedOrigins     []string
	TrustedProxies     []netip.Prefix
	AllowPrivateAgents bool
	HeartbeatTTL       time.Duration
	Retention          time.Duration
	RunHistory         int
	ShutdownGrace      time.Duration
	SecretKey          []byte
	MetricsListen      string
	LogFormat          string
	LogLevel           string
	MaxBodyBytes       int64
	ActivityBodyMax    int

	// raw values of list-valued and decoded flags, kept for Validate.
	allowedOrigins string
	trustedProxies string
	secretKey      string
}

// EnvName returns the environment variable for a flag: heartbeat-ttl →
// AGENTPLANE_HEARTBEAT_TTL.
func EnvName(flagName string) string { return EnvNameWith(EnvPrefix, flagName) }

// Scope chooses which flags a command takes.
type Scope int

// Scopes: the store flags are shared by serve and migrate.
const (
	ScopeStore Scope = iota // data dir, database URL, logging
	ScopeServe              // everything
)

// Register declares the flags of scope on fs with their defaults and returns
// the Config they fill. Call Parse afterwards.
func Register(fs *flag.FlagSet, scope Scope) *Config {
	c := &Config{}
	fs.StringVar(&c.DataDir, "data-dir", "./agentplane-data", "directory for the embedded SQLite database (and other local state); unused with --database-url")
	fs.StringVar(&c.DatabaseURL, "database-url", "", "PostgreSQL URL (postgres://user:pass@host:5432/db); when set, PostgreSQL is the store instead of SQLite and several replicas may share it")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "minimum log level: debug, info, warn or error")
	if scope == ScopeStore {
		return c
	}
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:8080", "address the HTTP API and canvas listen on (host:port)")
	fs.StringVar(&c.RedisURL, "redis-url", "", "Redis URL (redis://host:6379/0) used as the event relay between replicas instead of PostgreSQL LISTEN/NOTIFY")
	fs.StringVar(&c.AdminToken, "admin-token", "", "admin bearer token (at least 16 characters) for the admin routes (/admin/*, /metrics); compared in constant time. Without it the admin routes refuse every request")
	fs.StringVar(&c.allowedOrigins, "allowed-origins", "", "comma-separated extra origins (scheme://host[:port]) allowed to make cookie-authenticated writes and WebSocket upgrades, besides the server's own")
	fs.StringVar(&c.trustedProxies, "trusted-proxies", "", "comma-separated IPs or CIDRs of reverse proxies whose X-Forwarded-For is believed for the client IP")
	fs.BoolVar(&c.AllowPrivateAgents, "allow-private-agents", false, "allow agent URLs on loopback, private, link-local and other non-public addresses (for local development and tests)")
	fs.DurationVar(&c.HeartbeatTTL, "heartbeat-ttl", 90*time.Second, "a workspace with no heartbeat for this long is marked offline; agents beat every TTL/3")
	fs.DurationVar(&c.Retention, "retention", 7*24*time.Hour, "activity and events older than this are pruned")
	fs.IntVar(&c.RunHistory, "run-history", 1000, "schedule runs kept per schedule (newest first)")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", 30*time.Second, "on SIGTERM, how long in-flight requests and runs may take to finish before the process exits")
	fs.StringVar(&c.secretKey, "secret-key", "", "32-byte key, hex or base64, that encrypts chat-channel secrets at rest; required with --database-url so that every replica uses the same key")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "optional separate address (host:port) serving /metrics without authentication, e.g. for a Prometheus scraper on a private network")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", 1<<20, "largest accepted request body in bytes (larger → 413)")
	fs.IntVar(&c.ActivityBodyMax, "activity-body-max", 64<<10, "bytes kept of each request/response body in the activity log; longer bodies are cut and flagged truncated")
	return c
}

// Parse parses args into fs, filling every flag not given on the command line
// from its AGENTPLANE_* variable in env (os.Environ() when env is nil).
func Parse(fs *flag.FlagSet, args []string, env []string) error {
	return ParsePrefixed(fs, args, env, EnvPrefix, "")
}

// EnvPrefix starts the environment variable of every server flag.
const EnvPrefix = "AGENTPLANE_"

// EnvNameWith is the environment variable of a flag under prefix:
// heartbeat-ttl → <prefix>HEARTBEAT_TTL.
func EnvNameWith(prefix, flagName string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// ParsePrefixed is Parse for a command whose variables start with prefix
// (the agent's are AGENTPLANE_AGENT_*). hint ends the stray-argument error.
// Errors name the variable and the flag but never echo the value: it may be
// a secret.
func ParsePrefixed(fs *flag.FlagSet, args []string, env []string, prefix, hint string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		if hint == "" {
			hint = "see --help"
		}
		return fmt.Errorf("unexpected argument %q (flags start with --; %s)", fs.Arg(0), hint)
	}
	if env == nil {
		env = os.Environ()
	}
	vars := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] {
			return
		}
		name := EnvNameWith(prefix, f.Name)
		if v, ok := vars[name]; ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("invalid %s (for --%s): %v", name, f.Name, e)
			}
		}
	})
	return err
}

// Usage writes a command's help: a description, then each flag with its
// environment variable and default.
func Usage(w io.Writer, fs *flag.FlagSet, synopsis, description string) {
	UsagePrefixed(w, fs, synopsis, description, EnvPrefix)
}

// UsagePrefixed is Usage for a command whose variables start with prefix.
func UsagePrefixed(w io.Writer, fs *flag.FlagSet, synopsis, description, prefix string) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n\nFlags (each also read from the environment variable shown; a flag given on the command line wins):\n", synopsis, description)
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	sort.Strings(names)
	for _, n := range names {
		f := fs.Lookup(n)
		def := f.DefValue
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  --%s  (%s, default %s)\n      %s\n", n, EnvNameWith(prefix, n), def, f.Usage)
	}
}

// ValidateStore checks the flags shared by serve and migrate.
func (c *Config) ValidateStore() error {
	var errs []error
	if c.DatabaseURL == "" && strings.TrimSpace(c.DataDir) == "" {
		errs = append(errs, errors.New("--data-dir: must not be empty when --database-url is not set"))
	}
	if c.DatabaseURL != "" {
		u, err := url.Parse(c.DatabaseURL)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("--database-url: not a URL: %v", redactURLError(err)))
		case u.Scheme != "postgres" && u.Scheme != "postgresql":
			errs = append(errs, fmt.Errorf("--database-url: scheme must be postgres:// or postgresql://, got %q", u.Scheme))
		case u.Host == "" && u.Query().Get("host") == "":
			errs = append(errs, errors.New("--database-url: missing host"))
		}
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("--log-format: must be text or json, got %q", c.LogFormat))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level: must be debug, info, warn or error, got %q", c.LogLevel))
	}
	return errors.Join(errs...)
}

// Validate checks every serve flag and decodes the list-valued ones. The error
// names each offending flag.
func (c *Config) Validate() error {
	errs := []error{c.ValidateStore()}
	if err := validateHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen: %v", err))
	}
	if c.MetricsListen != "" {
		if err := validateHostPort(c.MetricsListen); err != nil {
			errs = append(errs, fmt.Errorf("--metrics-listen: %v", err))
		} else if c.MetricsListen == c.Listen {
			errs = append(errs, errors.New("--metrics-listen: must differ from --listen"))
		}
	}
	if c.RedisURL != "" {
		u, err := url.Parse(c.RedisURL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			errs = append(errs, errors.New("--redis-url: must look like redis://host:port[/db] or rediss://…"))
		}
	}
	if c.AdminToken != "" {
		switch {
		case len(c.AdminToken) < 16:
			errs = append(errs, fmt.Errorf("--admin-token: must be at least 16 characters, got %d", len(c.AdminToken)))
		case len(c.AdminToken) > 512:
			errs = append(errs, fmt.Errorf("--admin-token: must be at most 512 characters, got %d", len(c.AdminToken)))
		case strings.IndexFunc(c.AdminToken, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
			errs = append(errs, errors.New("--admin-token: must not contain spaces or control characters (it is sent as a bearer token)"))
		}
	}
	c.AllowedOrigins = nil
	for _, o := range splitList(c.allowedOrigins) {
		norm, err := normalizeOrigin(o)
		if err != nil {
			errs = append(errs, fmt.Errorf("--allowed-origins: %q: %v", o, err))
			continue
		}
		c.AllowedOrigins = append(c.AllowedOrigins, norm)
	}
	c.TrustedProxies = nil
	for _, p := range splitList(c.trustedProxies) {
		pfx, err := parsePrefix(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("--trusted-proxies: %q is not an IP or CIDR", p))
			continue
		}
		c.TrustedProxies = append(c.TrustedProxies, pfx)
	}
	if c.HeartbeatTTL < 3*time.Second {
		errs = append(errs, fmt.Errorf("--heartbeat-ttl: must be at least 3s, got %s", c.HeartbeatTTL))
	}
	if c.Retention < time.Minute {
		errs = append(errs, fmt.Errorf("--retention: must be at least 1m, got %s", c.Retention))
	}
	if c.RunHistory < 1 {
		errs = append(errs, fmt.Errorf("--run-history: must be at least 1, got %d", c.RunHistory))
	}
	if c.ShutdownGrace < 0 {
		errs = append(errs, fmt.Errorf("--shutdown-grace: must not be negative, got %s", c.ShutdownGrace))
	}
	if c.MaxBodyBytes < 1024 {
		errs = append(errs, fmt.Errorf("--max-body-bytes: must be at least 1024, got %d", c.MaxBodyBytes))
	}
	if c.ActivityBodyMax < 1024 {
		errs = append(errs, fmt.Errorf("--activity-body-max: must be at least 1024, got %d", c.ActivityBodyMax))
	}
	c.SecretKey = nil
	switch {
	case c.secretKey != "":
		key, err := decodeKey(c.secretKey)
		if err != nil {
			errs = append(errs, fmt.Errorf("--secret-key: %v", err))
		}
		c.SecretKey = key
	case c.DatabaseURL != "":
		errs = append(errs, errors.New("--secret-key: required with --database-url (every replica must encrypt channel secrets with the same key; generate one with `openssl rand -hex 32`)"))
	}
	return errors.Join(errs...)
}

func validateHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if port == "" {
		return fmt.Errorf("%q has no port", s)
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil && strings.ContainsAny(host, " /") {
			return fmt.Errorf("%q has an invalid host", s)
		}
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func normalizeOrigin(o string) (string, error) {
	u, err := url.Parse(o)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", errors.New("scheme must be http or https")
	}
	if u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("must be scheme://host[:port] with nothing after it")
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func decodeKey(s string) ([]byte, error) {
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, errors.New("must be 32 bytes encoded as 64 hex characters or base64")
}

// redactURLError keeps a password in a malformed URL out of the message.
func redactURLError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return "malformed"
}

// DatabaseKind returns "postgres" when a database URL is set, else "sqlite".
func (c *Config) DatabaseKind() string {
	if c.DatabaseURL != "" {
		return "postgres"
	}
	return "sqlite"
}

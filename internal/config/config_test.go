package config

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func parse(t *testing.T, args []string, env []string) (*Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := Register(fs, ScopeServe)
	if env == nil {
		env = []string{}
	}
	if err := Parse(fs, args, env); err != nil {
		return nil, err
	}
	return c, c.Validate()
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := parse(t, nil, nil)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:8080", c.Listen)
	require.Equal(t, "./agentplane-data", c.DataDir)
	require.Equal(t, 90*time.Second, c.HeartbeatTTL)
	require.Equal(t, 7*24*time.Hour, c.Retention)
	require.Equal(t, 1000, c.RunHistory)
	require.Equal(t, 30*time.Second, c.ShutdownGrace)
	require.Equal(t, "text", c.LogFormat)
	require.Equal(t, "sqlite", c.DatabaseKind())
	require.EqualValues(t, 1<<20, c.MaxBodyBytes)
}

func TestEnvAndFlagPrecedence(t *testing.T) {
	t.Parallel()
	env := []string{"AGENTPLANE_LISTEN=127.0.0.1:9000", "AGENTPLANE_HEARTBEAT_TTL=30s", "AGENTPLANE_ALLOW_PRIVATE_AGENTS=true", "AGENTPLANE_LOG_FORMAT=json"}
	c, err := parse(t, []string{"--listen", "127.0.0.1:9100"}, env)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:9100", c.Listen, "flag wins over env")
	require.Equal(t, 30*time.Second, c.HeartbeatTTL)
	require.True(t, c.AllowPrivateAgents)
	require.Equal(t, "json", c.LogFormat)
}

func TestLists(t *testing.T) {
	t.Parallel()
	c, err := parse(t, []string{"--allowed-origins", " https://Canvas.example.com , http://localhost:3000", "--trusted-proxies", "10.0.0.0/8,192.168.1.7"}, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"https://canvas.example.com", "http://localhost:3000"}, c.AllowedOrigins)
	require.Len(t, c.TrustedProxies, 2)
	require.Equal(t, "192.168.1.7/32", c.TrustedProxies[1].String())
}

func TestValidationNamesTheFlag(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"BadLogFormat", []string{"--log-format", "xml"}, nil, "--log-format"},
		{"BadListen", []string{"--listen", "8080"}, nil, "--listen"},
		{"ShortAdminToken", []string{"--admin-token", "short"}, nil, "--admin-token: must be at least 16"},
		{"AdminTokenWithSpace", []string{"--admin-token", "has a space in it ok"}, nil, "--admin-token: must not contain spaces"},
		{"BadOrigin", []string{"--allowed-origins", "https://x.com/path"}, nil, "--allowed-origins"},
		{"BadProxy", []string{"--trusted-proxies", "not-an-ip"}, nil, "--trusted-proxies"},
		{"TinyTTL", []string{"--heartbeat-ttl", "1s"}, nil, "--heartbeat-ttl"},
		{"BadDatabaseScheme", []string{"--database-url", "mysql://x/y", "--secret-key", strings.Repeat("ab", 32)}, nil, "--database-url: scheme"},
		{"SecretKeyRequiredWithPostgres", []string{"--database-url", "postgres://127.0.0.1/db"}, nil, "--secret-key: required"},
		{"BadSecretKey", []string{"--secret-key", "nothex"}, nil, "--secret-key: must be 32 bytes"},
		{"BadRedis", []string{"--redis-url", "http://x"}, nil, "--redis-url"},
		{"MetricsSameAsListen", []string{"--metrics-listen", "127.0.0.1:8080"}, nil, "--metrics-listen"},
		{"ZeroRunHistory", []string{"--run-history", "0"}, nil, "--run-history"},
		{"BadEnvDuration", nil, []string{"AGENTPLANE_RETENTION=forever"}, "AGENTPLANE_RETENTION"},
		{"UnparsableFlag", []string{"--shutdown-grace", "soon"}, nil, "shutdown-grace"},
		{"StrayArgument", []string{"serve"}, nil, `unexpected argument "serve"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := parse(t, tc.args, tc.env)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestDatabaseURLPasswordNotEchoed(t *testing.T) {
	t.Parallel()
	_, err := parse(t, []string{"--database-url", "postgres://u:s3cret@[bad/db", "--secret-key", strings.Repeat("ab", 32)}, nil)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret")
}

func TestUsageListsEnvNames(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	Register(fs, ScopeServe)
	var buf bytes.Buffer
	Usage(&buf, fs, "agentplane serve [flags]", "Runs the server.")
	for _, want := range []string{"--heartbeat-ttl", "AGENTPLANE_HEARTBEAT_TTL", "AGENTPLANE_DATABASE_URL", "--allow-private-agents"} {
		require.Contains(t, buf.String(), want)
	}
}

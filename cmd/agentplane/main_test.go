package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMain lets a test re-run this binary as the real agentplane command, so
// that signals are tested on a real process.
func TestMain(m *testing.M) {
	if os.Getenv("AGENTPLANE_TEST_RUN_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCLI(t *testing.T) {
	t.Parallel()

	t.Run("Version", func(t *testing.T) {
		t.Parallel()
		code, out, _ := runCLI("version")
		require.Equal(t, 0, code)
		require.True(t, strings.HasPrefix(out, "agentplane "), out)
	})

	t.Run("NoCommand", func(t *testing.T) {
		t.Parallel()
		code, _, errs := runCLI()
		require.Equal(t, 2, code)
		require.Contains(t, errs, "Commands:")
	})

	t.Run("UnknownCommand", func(t *testing.T) {
		t.Parallel()
		code, _, errs := runCLI("frobnicate")
		require.Equal(t, 2, code)
		require.Contains(t, errs, `unknown command "frobnicate"`)
	})

	t.Run("HelpForEachCommand", func(t *testing.T) {
		t.Parallel()
		for _, c := range []struct{ cmd, want string }{
			{"serve", "AGENTPLANE_HEARTBEAT_TTL"},
			{"migrate", "AGENTPLANE_DATABASE_URL"},
		} {
			code, out, _ := runCLI(c.cmd, "--help")
			require.Equal(t, 0, code)
			require.Contains(t, out, "Usage: agentplane "+c.cmd)
			require.Contains(t, out, c.want)
		}
		code, out, _ := runCLI("--help")
		require.Equal(t, 0, code)
		require.Contains(t, out, "serve")
	})

	t.Run("InvalidFlagNamed", func(t *testing.T) {
		t.Parallel()
		code, _, errs := runCLI("serve", "--heartbeat-ttl", "1s", "--log-format", "xml")
		require.Equal(t, 2, code)
		require.Contains(t, errs, "--heartbeat-ttl")
		require.Contains(t, errs, "--log-format")
		code, _, errs = runCLI("serve", "--no-such-flag")
		require.Equal(t, 2, code)
		require.Contains(t, errs, "no-such-flag")
	})

	t.Run("MigrateSQLite", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		code, _, errs := runCLI("migrate", "--data-dir", dir)
		require.Equal(t, 0, code, errs)
		require.Contains(t, errs, "schema is current")
		require.FileExists(t, filepath.Join(dir, "agentplane.db"))
		code, _, _ = runCLI("migrate", "--data-dir", dir)
		require.Equal(t, 0, code, "idempotent")
	})
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func TestServeStopsGracefullyOnSIGTERM(t *testing.T) {
	t.Parallel()
	addr := freePort(t)
	cmd := exec.Command(os.Args[0], "serve", "--listen", addr, "--data-dir", t.TempDir(), "--log-format", "json")
	cmd.Env = append(os.Environ(), "AGENTPLANE_TEST_RUN_MAIN=1")
	// The child writes stderr from exec's copying goroutine while the test
	// reads it: a mutex-guarded buffer (syncBuf, agent_test.go).
	stderr := &syncBuf{}
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		require.True(t, time.Now().Before(deadline), "server never became ready: %s", stderr.String())
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-done:
		require.NoError(t, err, "exit status after SIGTERM; log: %s", stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit after SIGTERM: %s", stderr.String())
	}
	require.Contains(t, stderr.String(), `"msg":"shutting down"`)
	require.Contains(t, stderr.String(), `"msg":"stopped"`)
}

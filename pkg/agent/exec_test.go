//go:build unix

package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentplane/agentplane/pkg/agent"
	"github.com/stretchr/testify/require"
)

func execAgent(t *testing.T, command string, o agent.Options) *testBundle {
	t.Helper()
	o.Handler = &agent.Exec{Command: command}
	return setup(t, o)
}

func TestExec(t *testing.T) {
	t.Parallel()

	t.Run("StdinToStdout", func(t *testing.T) {
		t.Parallel()
		b := execAgent(t, "tr a-z A-Z", agent.Options{})
		_, resp := post(t, b.srv.URL, "0.3", "message/send", obj{"message": message("0.3", "hello")})
		task := sendTask(t, "0.3", resp)
		require.Equal(t, "completed", state(task))
		require.Equal(t, "HELLO", statusText(t, task))
	})

	t.Run("NonZeroExitFailsWithStderr", func(t *testing.T) {
		t.Parallel()
		b := execAgent(t, "echo partial; echo 'disk full' >&2; exit 3", agent.Options{})
		_, resp := post(t, b.srv.URL, "1.0", "SendMessage", obj{"message": message("1.0", "x")})
		task := sendTask(t, "1.0", resp)
		require.Equal(t, "TASK_STATE_FAILED", state(task))
		require.Equal(t, "the command exited with status 3: disk full", statusText(t, task))
		art := task["artifacts"].([]any)[0].(obj)["parts"].([]any)[0].(obj)
		require.Equal(t, "partial\n", art["text"], "what the command printed before failing is kept")
	})

	t.Run("MissingCommandFails", func(t *testing.T) {
		t.Parallel()
		b := execAgent(t, "no-such-command-anywhere", agent.Options{})
		_, resp := post(t, b.srv.URL, "0.3", "message/send", obj{"message": message("0.3", "x")})
		task := sendTask(t, "0.3", resp)
		require.Equal(t, "failed", state(task))
		require.Contains(t, statusText(t, task), "status 127")
	})

	t.Run("TimeoutKillsTheProcessGroup", func(t *testing.T) {
		t.Parallel()
		// The background sleep keeps stdout open: only killing the whole
		// group (or WaitDelay) lets the task end.
		b := execAgent(t, "sleep 60 & sleep 60", agent.Options{TaskTimeout: 100 * time.Millisecond})
		_, resp := post(t, b.srv.URL, "0.3", "message/send", obj{"message": message("0.3", "x")})
		task := sendTask(t, "0.3", resp)
		require.Equal(t, "failed", state(task))
		require.Contains(t, statusText(t, task), "timed out")
		eventually(t, "the handler to return", func() bool { return b.agent.Status().ActiveTasks == 0 })
	})

	t.Run("OutputCapped", func(t *testing.T) {
		t.Parallel()
		b := execAgent(t, "head -c 100000 /dev/zero | tr '\\0' a", agent.Options{MaxOutputBytes: 1000})
		_, resp := post(t, b.srv.URL, "0.3", "message/send", obj{"message": message("0.3", "x")})
		task := sendTask(t, "0.3", resp)
		require.Equal(t, "completed", state(task), "the rest of the output is drained, not an error")
		text := statusText(t, task)
		require.True(t, strings.HasPrefix(text, strings.Repeat("a", 1000)+"\n[output truncated"), text[:50])
	})

	t.Run("CancelKillsTheCommand", func(t *testing.T) {
		t.Parallel()
		b := execAgent(t, "sleep 60", agent.Options{})
		_, resp := post(t, b.srv.URL, "1.0", "SendMessage", obj{"message": message("1.0", "x"), "configuration": obj{"returnImmediately": true}})
		id := sendTask(t, "1.0", resp)["id"].(string)
		_, resp = post(t, b.srv.URL, "1.0", "CancelTask", obj{"id": id})
		require.Equal(t, "TASK_STATE_CANCELED", state(result(t, resp)))
		eventually(t, "the command to be killed", func() bool { return b.agent.Status().ActiveTasks == 0 })
	})
}

// TestExecStreamsLines: each line reaches a streaming caller as the command
// prints it. The command prints a line, then waits on a FIFO that the test
// opens only after it has received that line.
func TestExecStreamsLines(t *testing.T) {
	t.Parallel()
	fifo := filepath.Join(t.TempDir(), "go-on")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	b := execAgent(t, "echo one; cat "+fifo+" >/dev/null; echo two", agent.Options{})

	body, _ := json.Marshal(obj{"jsonrpc": "2.0", "id": 1, "method": "message/stream", "params": obj{"message": message("0.3", "x")}})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.srv.URL, bytes.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var chunks []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev obj
		require.NoError(t, json.Unmarshal([]byte(data), &ev))
		r := result(t, ev)
		if r["kind"] != "artifact-update" {
			continue
		}
		chunk := r["artifact"].(obj)["parts"].([]any)[0].(obj)["text"].(string)
		chunks = append(chunks, chunk)
		require.Equal(t, len(chunks) > 1, r["append"] == true, "later chunks append to the first")
		if chunk == "one\n" {
			f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}
	}
	require.Equal(t, []string{"one\n", "two\n"}, chunks)
}

// TestExecEnvironment is not parallel: it sets process environment.
func TestExecEnvironment(t *testing.T) {
	t.Setenv("AGENTPLANE_AGENT_TOKEN", "apw_must-not-leak")
	t.Setenv("AGENTPLANE_EXAMPLE_SETTING", "kept")
	b := execAgent(t, `echo "task=$AGENTPLANE_TASK_ID token=$AGENTPLANE_AGENT_TOKEN setting=$AGENTPLANE_EXAMPLE_SETTING"`, agent.Options{})
	_, resp := post(t, b.srv.URL, "0.3", "message/send", obj{"message": message("0.3", "x")})
	task := sendTask(t, "0.3", resp)
	require.Equal(t, "task="+task["id"].(string)+" token= setting=kept\n", statusText(t, task))
}

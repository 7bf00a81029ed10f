//go:build unix

package agent_test

import (
	"fmt"
	"log/slog"
	"net/http/httptest"

	"github.com/agentplane/agentplane/pkg/agent"
)

// Exec turns any command line into an agent: the message is its stdin,
// its stdout the reply, and a non-zero exit a failed task carrying stderr.
func ExampleExec() {
	a, err := agent.New(agent.Options{
		Handler: &agent.Exec{Command: `read name; if [ -z "$name" ]; then echo "no name" >&2; exit 1; fi; echo "hello, $name"`},
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := httptest.NewServer(a)
	defer srv.Close()

	askA2A(srv.URL, "Ada")
	askA2A(srv.URL, "")
	// Output:
	// completed: hello, Ada
	// failed: the command exited with status 1: no name
}

package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/agentplane/agentplane/pkg/agent"
)

// askA2A sends one A2A 0.3 message/send and prints the task's state and reply.
func askA2A(url, text string) {
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"messageId":"m1","role":"user","parts":[{"kind":"text","text":%q}]}}}`, text)
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	var answer struct {
		Result struct {
			Status struct {
				State   string `json:"state"`
				Message struct {
					Parts []struct {
						Text string `json:"text"`
					} `json:"parts"`
				} `json:"message"`
			} `json:"status"`
		} `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(answer.Result.Status.State+":", strings.TrimSpace(answer.Result.Status.Message.Parts[0].Text))
}

// An agent is a Handler behind an http.Handler. This one runs without a
// platform; give Options.Platform and Options.Token and call Serve (or
// ListenAndServe) to register, heartbeat and report activity as well.
func Example() {
	a, err := agent.New(agent.Options{
		Name: "Shouter",
		Handler: agent.HandlerFunc(func(ctx context.Context, req *agent.Request, out *agent.Emitter) error {
			_, err := out.WriteString(strings.ToUpper(req.Text()) + "!")
			return err
		}),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := httptest.NewServer(a)
	defer srv.Close()

	askA2A(srv.URL, "hello")
	// Output: completed: HELLO!
}

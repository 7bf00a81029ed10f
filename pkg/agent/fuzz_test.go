package agent_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentplane/agentplane/pkg/agent"
)

// FuzzServeRPC: whatever the body and the A2A-Version header, the agent
// answers with a well-formed JSON-RPC response (or SSE stream of them) and
// never panics.
func FuzzServeRPC(f *testing.F) {
	for _, seed := range []struct{ version, body string }{
		{"", `{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"messageId":"m","role":"user","parts":[{"kind":"text","text":"hi"}]}}}`},
		{"1.0", `{"jsonrpc":"2.0","id":"x","method":"SendStreamingMessage","params":{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"text":"hi"}]}}}`},
		{"1.0", `{"jsonrpc":"2.0","id":2,"method":"GetTask","params":{"id":"nope","historyLength":-3}}`},
		{"", `{"jsonrpc":"2.0","id":null,"method":"tasks/cancel","params":{"id":""}}`},
		{"0.3", `{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"parts":[{"raw":"AAE="},{"data":{"k":[1]}},{"file":{"uri":"http://x"}}]},"configuration":{"blocking":false}}}`},
		{"2.0", `[]`},
		{"", `{"jsonrpc":"2.0","id":1e400,"method":"message/send"}`},
	} {
		f.Add(seed.version, seed.body)
	}
	a, err := agent.New(agent.Options{Handler: agent.Echo{}, Logger: quietLogger(), MaxTasks: 50})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, version, body string) {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		req.Header.Set("A2A-Version", version)
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		var payloads []string
		if strings.HasPrefix(rec.Header().Get("Content-Type"), "text/event-stream") {
			sc := bufio.NewScanner(rec.Body)
			sc.Buffer(nil, 8<<20)
			for sc.Scan() {
				if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
					payloads = append(payloads, data)
				}
			}
		} else {
			payloads = append(payloads, rec.Body.String())
		}
		if len(payloads) == 0 {
			t.Fatalf("no answer (status %d)", rec.Code)
		}
		for _, p := range payloads {
			var resp struct {
				JSONRPC string          `json:"jsonrpc"`
				Result  json.RawMessage `json:"result"`
				Error   *struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal([]byte(p), &resp); err != nil {
				t.Fatalf("answer is not JSON: %v: %q", err, p)
			}
			if resp.JSONRPC != "2.0" || (resp.Result == nil) == (resp.Error == nil) {
				t.Fatalf("not a JSON-RPC response: %q", p)
			}
			if resp.Error != nil && (resp.Error.Code == 0 || resp.Error.Message == "") {
				t.Fatalf("empty error: %q", p)
			}
		}
	})
}

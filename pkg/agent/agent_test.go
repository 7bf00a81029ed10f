package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentplane/agentplane/pkg/agent"
	"github.com/agentplane/agentplane/pkg/callersig"
	"github.com/stretchr/testify/require"
)

var versions = []string{"0.3", "1.0"}

func TestSend(t *testing.T) {
	t.Parallel()
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			b := setup(t, agent.Options{})
			code, resp := post(t, b.srv.URL, v, method(v, "send"), obj{"message": message(v, "hi")})
			require.Equal(t, 200, code)
			require.Equal(t, "req-1", resp["id"])
			require.Equal(t, "2.0", resp["jsonrpc"])
			task := sendTask(t, v, resp)
			require.Equal(t, wantState(v, "completed"), state(task))
			require.NotEmpty(t, task["id"])
			require.NotEmpty(t, task["contextId"])
			require.Equal(t, "echo: hi", statusText(t, task))

			msg := task["status"].(obj)["message"].(obj)
			part := msg["parts"].([]any)[0].(obj)
			art := task["artifacts"].([]any)[0].(obj)
			artPart := art["parts"].([]any)[0].(obj)
			require.Equal(t, "echo: hi", artPart["text"])
			history := task["history"].([]any)
			require.Len(t, history, 2, "the user's message and the agent's reply")
			if v == "1.0" {
				require.Equal(t, "ROLE_AGENT", msg["role"])
				require.Equal(t, "ROLE_USER", history[0].(obj)["role"])
				require.NotContains(t, part, "kind", "1.0 parts have no kind")
				require.NotContains(t, msg, "kind")
			} else {
				require.Equal(t, "agent", msg["role"])
				require.Equal(t, "user", history[0].(obj)["role"])
				require.Equal(t, "text", part["kind"])
				require.Equal(t, "message", msg["kind"])
			}
			require.Equal(t, "m-hi", history[0].(obj)["messageId"])
		})
	}
}

func TestSendFailingTask(t *testing.T) {
	t.Parallel()
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			b := setup(t, agent.Options{})
			_, resp := post(t, b.srv.URL, v, method(v, "send"), obj{"message": message(v, "fail now")})
			task := sendTask(t, v, resp)
			require.Equal(t, wantState(v, "failed"), state(task))
			require.Equal(t, "the command exited with status 2: it failed: fail now", statusText(t, task))
			st := b.agent.Status()
			require.Equal(t, 1.0, st.ErrorRate)
			require.Contains(t, st.SampleError, "it failed")
		})
	}
}

func TestStream(t *testing.T) {
	t.Parallel()
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			b := setup(t, agent.Options{})
			events := stream(t, b.srv.URL, v, obj{"message": message(v, "flow")})
			var kinds []string
			var texts []string
			for _, ev := range events {
				r := result(t, ev)
				if v == "1.0" {
					require.Len(t, r, 1, "1.0 events wrap one field: %v", r)
					for k, inner := range r {
						kinds = append(kinds, k)
						r = inner.(obj)
					}
				} else {
					kinds = append(kinds, r["kind"].(string))
				}
				if a, ok := r["artifact"].(obj); ok {
					texts = append(texts, a["parts"].([]any)[0].(obj)["text"].(string))
				}
				if st, ok := r["status"].(obj); ok && v == "0.3" && r["kind"] == "status-update" {
					require.Equal(t, st["state"] == "completed", r["final"], "final marks the last update")
				}
			}
			if v == "1.0" {
				require.Equal(t, []string{"task", "statusUpdate", "artifactUpdate", "statusUpdate"}, kinds)
			} else {
				require.Equal(t, []string{"task", "status-update", "artifact-update", "status-update"}, kinds)
			}
			require.Equal(t, []string{"echo: flow"}, texts)
			last := result(t, events[len(events)-1])
			if v == "1.0" {
				last = last["statusUpdate"].(obj)
			}
			require.Equal(t, wantState(v, "completed"), last["status"].(obj)["state"])
			first := result(t, events[0])
			if v == "1.0" {
				first = first["task"].(obj)
			}
			require.Equal(t, wantState(v, "submitted"), state(first))
		})
	}
}

func TestNonBlockingGetAndCancel(t *testing.T) {
	t.Parallel()
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			b := setup(t, agent.Options{})
			cfg := obj{"blocking": false}
			if v == "1.0" {
				cfg = obj{"returnImmediately": true}
			}
			_, resp := post(t, b.srv.URL, v, method(v, "send"), obj{"message": message(v, "hold me"), "configuration": cfg})
			task := sendTask(t, v, resp)
			require.Equal(t, wantState(v, "working"), state(task))
			id := task["id"].(string)
			b.gate.awaitStarted(t, "hold me")
			require.Equal(t, 1, b.agent.Status().ActiveTasks)
			require.Equal(t, "hold me", b.agent.Status().CurrentTask)

			_, resp = post(t, b.srv.URL, v, method(v, "get"), obj{"id": id})
			got := result(t, resp)
			require.Equal(t, wantState(v, "working"), state(got), "tasks/get answers the bare task")
			require.Equal(t, id, got["id"])

			_, resp = post(t, b.srv.URL, v, method(v, "cancel"), obj{"id": id})
			got = result(t, resp)
			require.Equal(t, wantState(v, "canceled"), state(got))

			_, resp = post(t, b.srv.URL, v, method(v, "get"), obj{"id": id, "historyLength": 1})
			got = result(t, resp)
			require.Equal(t, wantState(v, "canceled"), state(got))
			require.Len(t, got["history"], 1, "historyLength keeps the newest messages")

			_, resp = post(t, b.srv.URL, v, method(v, "cancel"), obj{"id": id})
			code, msg := rpcError(t, resp)
			require.Equal(t, agent.CodeTaskNotCancelable, code)
			require.Contains(t, msg, "canceled")

			_, resp = post(t, b.srv.URL, v, method(v, "get"), obj{"id": "no-such-task"})
			code, _ = rpcError(t, resp)
			require.Equal(t, agent.CodeTaskNotFound, code)

			eventually(t, "the cancelled handler to return", func() bool { return b.agent.Status().ActiveTasks == 0 })
			require.Zero(t, b.agent.Status().ErrorRate, "a cancelled task is not an error")
		})
	}
}

func TestNonBlockingCompletesLater(t *testing.T) {
	t.Parallel()
	b := setup(t, agent.Options{})
	_, resp := post(t, b.srv.URL, "0.3", "message/send", obj{"message": message("0.3", "hold on"), "configuration": obj{"blocking": false}})
	id := sendTask(t, "0.3", resp)["id"].(string)
	b.gate.awaitStarted(t, "hold on")
	b.gate.open()
	eventually(t, "the task to complete", func() bool {
		_, resp := post(t, b.srv.URL, "0.3", "tasks/get", obj{"id": id})
		return state(result(t, resp)) == "completed"
	})
	_, resp = post(t, b.srv.URL, "0.3", "tasks/get", obj{"id": id})
	require.Equal(t, "echo: hold on", statusText(t, result(t, resp)))
}

func TestBusy(t *testing.T) {
	t.Parallel()
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			b := setup(t, agent.Options{MaxConcurrent: 1})
			cfg := obj{"blocking": false, "returnImmediately": true}
			_, resp := post(t, b.srv.URL, v, method(v, "send"), obj{"message": message(v, "hold 1"), "configuration": cfg})
			id := sendTask(t, v, resp)["id"].(string)
			b.gate.awaitStarted(t, "hold 1")

			code, resp := post(t, b.srv.URL, v, method(v, "send"), obj{"message": message(v, "second")})
			require.Equal(t, http.StatusServiceUnavailable, code, "busy: the message was not taken")
			ecode, msg := rpcError(t, resp)
			require.Equal(t, agent.CodeBusy, ecode)
			require.Contains(t, msg, "busy")
			data := resp["error"].(obj)["data"]
			if v == "1.0" {
				require.Equal(t, "AGENT_BUSY", data.([]any)[0].(obj)["reason"])
			} else {
				require.Nil(t, data)
			}

			hresp, err := http.Post(b.srv.URL, "application/json", bytes.NewReader(mustJSON(t, obj{"jsonrpc": "2.0", "id": 1, "method": method(v, "send"), "params": obj{"message": message(v, "x")}})))
			require.NoError(t, err)
			hresp.Body.Close()
			require.Equal(t, "5", hresp.Header.Get("Retry-After"))

			code, resp = post(t, b.srv.URL, v, method(v, "stream"), obj{"message": message(v, "third")})
			require.Equal(t, http.StatusServiceUnavailable, code, "a refused stream is refused before any event")
			ecode, _ = rpcError(t, resp)
			require.Equal(t, agent.CodeBusy, ecode)

			b.gate.open()
			eventually(t, "the first task to finish", func() bool {
				_, resp := post(t, b.srv.URL, v, method(v, "get"), obj{"id": id})
				return state(result(t, resp)) == wantState(v, "completed")
			})
			eventually(t, "the slot to free", func() bool { return b.agent.Status().ActiveTasks == 0 })
			_, resp = post(t, b.srv.URL, v, method(v, "send"), obj{"message": message(v, "fourth")})
			require.Equal(t, wantState(v, "completed"), state(sendTask(t, v, resp)))
		})
	}
}

func TestManyConcurrentSendsNeverCrash(t *testing.T) {
	t.Parallel()
	b := setup(t, agent.Options{MaxConcurrent: 2})
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[string]int{}
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, _ := json.Marshal(obj{"jsonrpc": "2.0", "id": i, "method": "message/send", "params": obj{"message": message("0.3", "x")}})
			resp, err := http.Post(b.srv.URL, "application/json", bytes.NewReader(body))
			if err != nil {
				return
			}
			defer resp.Body.Close()
			var out obj
			_ = json.NewDecoder(resp.Body).Decode(&out)
			mu.Lock()
			defer mu.Unlock()
			if out["error"] != nil {
				outcomes["busy"]++
			} else {
				outcomes["ok"]++
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 20, outcomes["ok"]+outcomes["busy"])
	require.Positive(t, outcomes["ok"])
}

func TestSignature(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"messageId":"m","role":"user","parts":[{"kind":"text","text":"who"}]}}}`)
	var seen sync.Map
	h := agent.HandlerFunc(func(ctx context.Context, req *agent.Request, out *agent.Emitter) error {
		seen.Store(req.MessageID, req.Caller)
		_, err := out.WriteString("ok")
		return err
	})

	t.Run("ValidSignatureNamesTheCaller", func(t *testing.T) {
		t.Parallel()
		b := setup(t, agent.Options{Handler: h, CallerSecret: secret, RequireSignature: true})
		sig := callersig.Sign(secret, "workspace:abc", body, time.Now())
		code, resp := postRaw(t, b.srv.URL, "0.3", body, callersig.Header, sig)
		require.Equal(t, 200, code)
		require.Equal(t, "completed", state(sendTask(t, "0.3", resp)))
		caller, _ := seen.Load("m")
		require.Equal(t, "workspace:abc", caller)
	})
	t.Run("InvalidSignatureRefused", func(t *testing.T) {
		t.Parallel()
		b := setup(t, agent.Options{Handler: h, CallerSecret: secret})
		sig := callersig.Sign([]byte("another-secret-another-secret-00"), "admin", body, time.Now())
		code, resp := postRaw(t, b.srv.URL, "0.3", body, callersig.Header, sig)
		require.Equal(t, http.StatusUnauthorized, code)
		ecode, _ := rpcError(t, resp)
		require.Equal(t, agent.CodeUnauthenticated, ecode)
		tampered := bytes.Replace(body, []byte("who"), []byte("why"), 1)
		code, _ = postRaw(t, b.srv.URL, "0.3", tampered, callersig.Header, callersig.Sign(secret, "admin", body, time.Now()))
		require.Equal(t, http.StatusUnauthorized, code, "the signature covers the body")
	})
	t.Run("MissingSignatureRefusedWhenRequired", func(t *testing.T) {
		t.Parallel()
		b := setup(t, agent.Options{Handler: h, CallerSecret: secret, RequireSignature: true})
		code, resp := postRaw(t, b.srv.URL, "1.0", body)
		require.Equal(t, http.StatusUnauthorized, code)
		ecode, _ := rpcError(t, resp)
		require.Equal(t, agent.CodeUnauthenticated, ecode)
		require.Equal(t, "UNAUTHENTICATED", resp["error"].(obj)["data"].([]any)[0].(obj)["reason"])
		// The card stays public: the platform's health sweep reads it unsigned.
		resp2, err := http.Get(b.srv.URL + "/.well-known/agent-card.json")
		require.NoError(t, err)
		resp2.Body.Close()
		require.Equal(t, 200, resp2.StatusCode)
	})
	t.Run("MissingSignatureAllowedWhenOptional", func(t *testing.T) {
		t.Parallel()
		b := setup(t, agent.Options{Handler: h, CallerSecret: secret})
		code, resp := postRaw(t, b.srv.URL, "0.3", bytes.Replace(body, []byte(`"m"`), []byte(`"m2"`), 1))
		require.Equal(t, 200, code)
		require.Equal(t, "completed", state(sendTask(t, "0.3", resp)))
		caller, _ := seen.Load("m2")
		require.Equal(t, "", caller)
	})
	t.Run("RequireWithoutAnySecretIsAConfigError", func(t *testing.T) {
		t.Parallel()
		_, err := agent.New(agent.Options{Handler: h, RequireSignature: true})
		require.ErrorContains(t, err, "RequireSignature")
	})
}

func TestCard(t *testing.T) {
	t.Parallel()
	b := setup(t, agent.Options{Name: "Auditor", Description: "audits", Skills: []agent.Skill{{ID: "audit", Name: "Audit", Description: "runs the audit"}}})
	for _, path := range []string{"/.well-known/agent-card.json", "/.well-known/agent.json"} {
		resp, err := http.Get(b.srv.URL + path)
		require.NoError(t, err)
		var card obj
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&card))
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, "Auditor", card["name"])
		require.Equal(t, b.srv.URL, card["url"], "without a configured URL the card names the address the caller used")
		require.Equal(t, "0.3.0", card["protocolVersion"])
		require.Equal(t, "JSONRPC", card["preferredTransport"])
		require.Equal(t, true, card["capabilities"].(obj)["streaming"])
		var got []string
		for _, i := range card["supportedInterfaces"].([]any) {
			got = append(got, i.(obj)["protocolVersion"].(string)+" "+i.(obj)["protocolBinding"].(string))
			require.Equal(t, b.srv.URL, i.(obj)["url"])
		}
		require.Equal(t, []string{"1.0 JSONRPC", "0.3 JSONRPC"}, got)
		skill := card["skills"].([]any)[0].(obj)
		require.Equal(t, "audit", skill["id"])
		require.Equal(t, []any{}, skill["tags"], "0.3 requires tags")
	}
}

func TestProtocolErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, agent.Options{MaxRequestBytes: 4096})
	cases := []struct {
		name, version, body string
		header              []string
		status, code        int
		contains            string
	}{
		{"NotJSON", "0.3", `{nope`, nil, 200, agent.CodeParseError, "not a JSON-RPC request"},
		{"Batch", "0.3", `[{"jsonrpc":"2.0"}]`, nil, 200, agent.CodeInvalidRequest, "batch"},
		{"WrongJSONRPC", "0.3", `{"jsonrpc":"1.0","id":1,"method":"message/send"}`, nil, 200, agent.CodeInvalidRequest, "jsonrpc"},
		{"BadID", "0.3", `{"jsonrpc":"2.0","id":{},"method":"message/send"}`, nil, 200, agent.CodeInvalidRequest, "id"},
		{"UnknownMethod", "1.0", `{"jsonrpc":"2.0","id":1,"method":"ListTasks","params":{}}`, nil, 200, agent.CodeMethodNotFound, "ListTasks"},
		{"UnknownVersion", "0.3", `{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{}}`, []string{"A2A-Version", "2.0"}, 200, agent.CodeVersionNotSupported, "2.0"},
		{"NoParams", "0.3", `{"jsonrpc":"2.0","id":1,"method":"message/send"}`, nil, 200, agent.CodeInvalidParams, "params are required"},
		{"NoMessage", "0.3", `{"jsonrpc":"2.0","id":1,"method":"message/send","params":{}}`, nil, 200, agent.CodeInvalidParams, "message is required"},
		{"EmptyParts", "1.0", `{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"m","role":"ROLE_USER","parts":[]}}}`, nil, 200, agent.CodeInvalidParams, "parts must not be empty"},
		{"WrongType", "0.3", `{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"messageId":"m","parts":"hello"}}}`, nil, 200, agent.CodeInvalidParams, "params.message.parts"},
		{"EmptyPart", "0.3", `{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"messageId":"m","parts":[{"kind":"text"}]}}}`, nil, 200, agent.CodeInvalidParams, "parts[0]"},
		{"PushConfig", "0.3", `{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"messageId":"m","parts":[{"kind":"text","text":"x"}]},"configuration":{"pushNotificationConfig":{"url":"http://x"}}}}`, nil, 200, agent.CodePushNotSupported, "push"},
		{"UnknownTaskID", "0.3", `{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"messageId":"m","taskId":"t-1","parts":[{"kind":"text","text":"x"}]}}}`, nil, 200, agent.CodeTaskNotFound, "t-1"},
		{"GetWithoutID", "1.0", `{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{}}`, nil, 200, agent.CodeInvalidParams, "params.id"},
		{"TooLarge", "0.3", `{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"x":"` + strings.Repeat("a", 5000) + `"}}`, nil, 413, agent.CodeInvalidRequest, "exceeds 4096 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			status, resp := postRaw(t, b.srv.URL, c.version, []byte(c.body), c.header...)
			require.Equal(t, c.status, status)
			code, msg := rpcError(t, resp)
			require.Equal(t, c.code, code)
			require.Contains(t, msg, c.contains)
		})
	}
	t.Run("GetOnRoot", func(t *testing.T) {
		t.Parallel()
		resp, err := http.Get(b.srv.URL + "/")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
		require.Equal(t, "POST", resp.Header.Get("Allow"))
	})
	t.Run("AnyPathServesJSONRPC", func(t *testing.T) {
		t.Parallel()
		_, resp := post(t, b.srv.URL+"/a2a", "0.3", "message/send", obj{"message": message("0.3", "path")})
		require.Equal(t, "completed", state(sendTask(t, "0.3", resp)))
	})
	t.Run("NumericAndNullIDsEchoed", func(t *testing.T) {
		t.Parallel()
		_, resp := postRaw(t, b.srv.URL, "0.3", []byte(`{"jsonrpc":"2.0","id":42,"method":"tasks/get","params":{"id":"x"}}`))
		require.Equal(t, float64(42), resp["id"])
		_, resp = postRaw(t, b.srv.URL, "0.3", []byte(`{"jsonrpc":"2.0","method":"tasks/get","params":{"id":"x"}}`))
		require.Contains(t, resp, "id")
		require.Nil(t, resp["id"])
	})
}

func TestOldTasksForgotten(t *testing.T) {
	t.Parallel()
	b := setup(t, agent.Options{MaxConcurrent: 1, MaxTasks: 3})
	var ids []string
	for i := range 5 {
		_, resp := post(t, b.srv.URL, "0.3", "message/send", obj{"message": message("0.3", "n"+string(rune('a'+i)))})
		ids = append(ids, sendTask(t, "0.3", resp)["id"].(string))
		eventually(t, "the task's slot to free", func() bool { return b.agent.Status().ActiveTasks == 0 })
	}
	for i, id := range ids {
		_, resp := post(t, b.srv.URL, "0.3", "tasks/get", obj{"id": id})
		if i < 2 {
			code, _ := rpcError(t, resp)
			require.Equal(t, agent.CodeTaskNotFound, code, "task %d was evicted", i)
		} else {
			require.Equal(t, "completed", state(result(t, resp)))
		}
	}
}

func TestReplyCapped(t *testing.T) {
	t.Parallel()
	truncated := make(chan bool, 1)
	h := agent.HandlerFunc(func(ctx context.Context, req *agent.Request, out *agent.Emitter) error {
		for range 10 {
			_, _ = out.WriteString(strings.Repeat("é", 50)) // 100 bytes each
		}
		truncated <- out.Truncated()
		return nil
	})
	b := setup(t, agent.Options{Handler: h, MaxOutputBytes: 301})
	_, resp := post(t, b.srv.URL, "1.0", "SendMessage", obj{"message": message("1.0", "x")})
	text := statusText(t, sendTask(t, "1.0", resp))
	body, note, ok := strings.Cut(text, "\n[output truncated")
	require.True(t, ok, text)
	require.Equal(t, strings.Repeat("é", 150), body, "cut on a character boundary")
	require.Contains(t, note, "capped at 301 bytes")
	require.True(t, <-truncated)
}

func TestHandlerPanicFailsTheTask(t *testing.T) {
	t.Parallel()
	h := agent.HandlerFunc(func(ctx context.Context, req *agent.Request, out *agent.Emitter) error { panic("boom") })
	b := setup(t, agent.Options{Handler: h})
	_, resp := post(t, b.srv.URL, "0.3", "message/send", obj{"message": message("0.3", "x")})
	task := sendTask(t, "0.3", resp)
	require.Equal(t, "failed", state(task))
	require.Contains(t, statusText(t, task), "panicked: boom")
}

func TestTaskTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, agent.Options{TaskTimeout: 50 * time.Millisecond})
	_, resp := post(t, b.srv.URL, "0.3", "message/send", obj{"message": message("0.3", "hold forever")})
	task := sendTask(t, "0.3", resp)
	require.Equal(t, "failed", state(task))
	require.Contains(t, statusText(t, task), "timed out after 50ms")
}

func TestCallerGoneCancelsBlockingTask(t *testing.T) {
	t.Parallel()
	b := setup(t, agent.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	body, _ := json.Marshal(obj{"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": obj{"message": message("0.3", "hold gone")}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.srv.URL, bytes.NewReader(body))
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
	}()
	b.gate.awaitStarted(t, "hold gone")
	cancel()
	<-done
	eventually(t, "the task to be cancelled", func() bool { return b.agent.Status().ActiveTasks == 0 })
}

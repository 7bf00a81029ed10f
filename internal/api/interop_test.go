package api

import (
	"context"
	"iter"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2aclient"
	"github.com/a2aproject/a2a-go/v2/a2acompat/a2av0"
	"github.com/a2aproject/a2a-go/v2/a2asrv"
	"github.com/agentplane/agentplane/internal/gateway"
	"github.com/stretchr/testify/require"
)

// echoExecutor is an agent built with the official A2A Go SDK: it answers
// every message with "echo: <text>".
type echoExecutor struct{}

func (echoExecutor) Execute(ctx context.Context, ec *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {
		text := ""
		if ec.Message != nil && len(ec.Message.Parts) > 0 {
			text = ec.Message.Parts[0].Text()
		}
		yield(a2a.NewMessage(a2a.MessageRoleAgent, a2a.NewTextPart("echo: "+text)), nil)
	}
}

func (echoExecutor) Cancel(ctx context.Context, ec *a2asrv.ExecutorContext) iter.Seq2[a2a.Event, error] {
	return func(yield func(a2a.Event, error) bool) {}
}

// bearerTransport adds agentplane credentials to the SDK client's requests.
type bearerTransport struct{ token string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

func messageText(t *testing.T, res any) string {
	t.Helper()
	msg, ok := res.(*a2a.Message)
	require.True(t, ok, "want a message, got %T", res)
	require.NotEmpty(t, msg.Parts)
	return msg.Parts[0].Text()
}

// TestInteropWithOfficialSDK: the official A2A Go SDK (a2a-go v2.3.1) as
// the agent behind the gateway and as the client in front of it, for A2A 1.0
// and 0.3, send and stream.
func TestInteropWithOfficialSDK(t *testing.T) {
	t.Parallel()
	for _, version := range []string{"1.0", "0.3"} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			var agent http.Handler
			if version == "1.0" {
				agent = a2asrv.NewJSONRPCHandler(a2asrv.NewHandler(echoExecutor{}))
			} else {
				agent = a2av0.NewJSONRPCHandler(a2asrv.NewHandler(echoExecutor{}))
			}
			agentSrv := httptest.NewServer(agent)
			defer agentSrv.Close()
			b.online(t, b.ownToken, agentSrv.URL)
			gw := httptest.NewServer(b.handler)
			defer gw.Close()

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			hc := &http.Client{Transport: bearerTransport{adminToken}}
			endpoint := []*a2a.AgentInterface{{URL: gw.URL + "/workspaces/" + b.ownID + "/a2a", ProtocolBinding: a2a.TransportProtocolJSONRPC, ProtocolVersion: a2a.ProtocolVersion(version)}}
			var opt a2aclient.FactoryOption
			if version == "1.0" {
				opt = a2aclient.WithJSONRPCTransport(hc)
			} else {
				opt = a2av0.WithJSONRPCTransport(a2av0.JSONRPCTransportConfig{Client: hc})
			}
			client, err := a2aclient.NewFromEndpoints(ctx, endpoint, opt)
			require.NoError(t, err)

			res, err := client.SendMessage(ctx, &a2a.SendMessageRequest{Message: a2a.NewMessage(a2a.MessageRoleUser, a2a.NewTextPart("ping"))})
			require.NoError(t, err)
			require.Equal(t, "echo: ping", messageText(t, res))

			var streamed []string
			for ev, err := range client.SendStreamingMessage(ctx, &a2a.SendMessageRequest{Message: a2a.NewMessage(a2a.MessageRoleUser, a2a.NewTextPart("stream"))}) {
				require.NoError(t, err)
				if m, ok := ev.(*a2a.Message); ok {
					streamed = append(streamed, m.Parts[0].Text())
				}
			}
			require.Equal(t, []string{"echo: stream"}, streamed)
			require.Len(t, b.activityRows(b.ownID), 2, "both calls recorded")

			// The internal Send (scheduler, channels) picks the version from
			// the stored card and speaks it to the SDK's server.
			card := map[string]any{"name": "sdk", "protocolVersion": "0.3.0"}
			if version == "1.0" {
				card = card10
			}
			b.registerCard(t, agentSrv.URL, card)
			out := b.server.d.Gateway.Send(ctx, b.ownID, gateway.Message{Text: "cron"}, gateway.SendOptions{Caller: "scheduler", Timeout: 10 * time.Second})
			require.Equal(t, gateway.KindMessage, out.Kind, out.Detail)
			require.Equal(t, version, out.Version)
			require.Equal(t, "echo: cron", out.Text)
		})
	}
}

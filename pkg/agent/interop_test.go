package agent_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2aclient"
	"github.com/a2aproject/a2a-go/v2/a2aclient/agentcard"
	"github.com/a2aproject/a2a-go/v2/a2acompat/a2av0"
	"github.com/agentplane/agentplane/pkg/agent"
	"github.com/stretchr/testify/require"
)

// sdkClient is the official A2A Go SDK's client (a2a-go v2.3.1, test-only)
// for version v, built from the agent's own card so that the card is
// checked too.
func sdkClient(t *testing.T, ctx context.Context, baseURL, v string) *a2aclient.Client {
	t.Helper()
	var (
		card *a2a.AgentCard
		err  error
		opt  a2aclient.FactoryOption
	)
	if v == "1.0" {
		card, err = agentcard.DefaultResolver.Resolve(ctx, baseURL)
		opt = a2aclient.WithJSONRPCTransport(http.DefaultClient)
	} else {
		resolver := &agentcard.Resolver{Client: http.DefaultClient, CardParser: a2av0.NewAgentCardParser()}
		card, err = resolver.Resolve(ctx, baseURL)
		opt = a2av0.WithJSONRPCTransport(a2av0.JSONRPCTransportConfig{Client: http.DefaultClient})
	}
	require.NoError(t, err)
	require.True(t, card.Capabilities.Streaming)
	// Keep only the interfaces of version v so that the factory picks it.
	var ifaces []*a2a.AgentInterface
	for _, i := range card.SupportedInterfaces {
		if string(i.ProtocolVersion) == v {
			ifaces = append(ifaces, i)
		}
	}
	require.Len(t, ifaces, 1, "the card lists version %s", v)
	card.SupportedInterfaces = ifaces
	client, err := a2aclient.NewFromCard(ctx, card, opt)
	require.NoError(t, err)
	return client
}

func taskText(t *testing.T, task *a2a.Task) string {
	t.Helper()
	require.NotNil(t, task.Status.Message)
	require.NotEmpty(t, task.Status.Message.Parts)
	return task.Status.Message.Parts[0].Text()
}

// TestInteropWithOfficialSDK: the official client, in both protocol
// versions, sends, streams, gets and cancels through pkg/agent.
func TestInteropWithOfficialSDK(t *testing.T) {
	t.Parallel()
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			b := setup(t, agent.Options{})
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			client := sdkClient(t, ctx, b.srv.URL, v)

			res, err := client.SendMessage(ctx, &a2a.SendMessageRequest{Message: a2a.NewMessage(a2a.MessageRoleUser, a2a.NewTextPart("ping"))})
			require.NoError(t, err)
			task, ok := res.(*a2a.Task)
			require.True(t, ok, "want a task, got %T", res)
			require.Equal(t, a2a.TaskStateCompleted, task.Status.State)
			require.Equal(t, "echo: ping", taskText(t, task))
			require.Equal(t, a2a.MessageRoleAgent, task.Status.Message.Role)
			require.Len(t, task.Artifacts, 1)
			require.Equal(t, "echo: ping", task.Artifacts[0].Parts[0].Text())

			got, err := client.GetTask(ctx, &a2a.GetTaskRequest{ID: task.ID})
			require.NoError(t, err)
			require.Equal(t, task.ID, got.ID)
			require.Equal(t, a2a.TaskStateCompleted, got.Status.State)

			var kinds []string
			var final a2a.TaskState
			var streamed string
			for ev, err := range client.SendStreamingMessage(ctx, &a2a.SendMessageRequest{Message: a2a.NewMessage(a2a.MessageRoleUser, a2a.NewTextPart("stream"))}) {
				require.NoError(t, err)
				switch e := ev.(type) {
				case *a2a.Task:
					kinds = append(kinds, "task")
				case *a2a.TaskStatusUpdateEvent:
					kinds = append(kinds, "status")
					final = e.Status.State
				case *a2a.TaskArtifactUpdateEvent:
					kinds = append(kinds, "artifact")
					streamed += e.Artifact.Parts[0].Text()
				default:
					t.Fatalf("unexpected event %T", ev)
				}
			}
			require.Equal(t, []string{"task", "status", "artifact", "status"}, kinds)
			require.Equal(t, a2a.TaskStateCompleted, final)
			require.Equal(t, "echo: stream", streamed)

			res, err = client.SendMessage(ctx, &a2a.SendMessageRequest{
				Message: a2a.NewMessage(a2a.MessageRoleUser, a2a.NewTextPart("hold please")),
				Config:  &a2a.SendMessageConfig{ReturnImmediately: true},
			})
			require.NoError(t, err)
			held := res.(*a2a.Task)
			require.Equal(t, a2a.TaskStateWorking, held.Status.State)
			b.gate.awaitStarted(t, "ping")
			b.gate.awaitStarted(t, "stream")
			b.gate.awaitStarted(t, "hold please")
			canceled, err := client.CancelTask(ctx, &a2a.CancelTaskRequest{ID: held.ID})
			require.NoError(t, err)
			require.Equal(t, a2a.TaskStateCanceled, canceled.Status.State)

			_, err = client.GetTask(ctx, &a2a.GetTaskRequest{ID: "no-such-task"})
			require.Error(t, err)
			if v == "1.0" {
				require.ErrorIs(t, err, a2a.ErrTaskNotFound)
			}
		})
	}
}

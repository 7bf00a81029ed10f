// Package agent is the Go SDK of agentplane agents and the engine of the
// reference agent (`agentplane agent`, SPEC §13): it serves the A2A protocol
// and keeps an agent known to its platform, so that a Go program only writes
// a Handler.
//
// It owns:
//
//   - A2A JSON-RPC over HTTP POST in both protocol versions, chosen per
//     request by the method name: 0.3 (message/send, message/stream,
//     tasks/get, tasks/cancel; "kind" discriminators, states like
//     "completed") and 1.0 (SendMessage, SendStreamingMessage, GetTask,
//     CancelTask; results wrapped as {"task": …}, roles ROLE_USER/ROLE_AGENT,
//     states like TASK_STATE_COMPLETED). An A2A-Version header naming
//     another major version is refused.
//   - The agent card at /.well-known/agent-card.json and
//     /.well-known/agent.json, in the 1.0 shape with the 0.3 fields kept.
//   - Tasks: every message starts a task that runs the Handler on its own
//     goroutine. message/send answers with the finished task unless the
//     caller asks not to block (0.3 configuration.blocking: false, 1.0
//     configuration.returnImmediately: true); streams send the task, status
//     updates and the reply as artifact updates over SSE. A blocking or
//     streaming caller that goes away cancels its task. Finished tasks stay
//     readable with tasks/get until Options.MaxTasks newer ones push them
//     out. Beyond Options.MaxConcurrent running tasks a send is refused, never
//     queued: HTTP 503 with Retry-After and a JSON-RPC error (code -32000,
//     reason AGENT_BUSY), the answer the platform reads as "not taken".
//   - The platform: with Options.Platform, Serve registers (POST
//     /registry/register), keeps the caller secret it returns, heartbeats
//     at the interval the platform asks for with the real count of active
//     tasks, the current task and the recent error rate — on its own
//     goroutine, so long tasks never delay a beat — registers again when a
//     heartbeat is answered 404, and stops with ErrRemoved on 410. Finished
//     tasks are reported to the activity log (task_update) from a bounded
//     queue that never delays a reply.
//   - Caller verification: a request carrying X-Agentplane-Caller is
//     verified with pkg/callersig and refused (HTTP 401 and a JSON-RPC
//     error) when invalid; Options.RequireSignature refuses unsigned ones
//     too, so that only the platform's gateway reaches the agent.
//   - Graceful shutdown: Shutdown (or the end of Serve's context) refuses
//     new tasks, lets running ones finish and only then stops heartbeating.
//
// Echo and Exec are ready-made handlers; Exec runs a shell command per
// message the way `agentplane agent --exec` does.
//
// The package must never depend on agentplane's internal packages (outside
// programs import it; only its end-to-end tests start a real server) and must never block a reply on the platform: every
// platform call is bounded and best effort except registration itself.
package agent

// Package registry owns workspaces: their creation, hierarchy, tokens, the
// agent-facing registry calls (register, heartbeat, update-card, discover,
// peers, check-access), the status machine of SPEC §5, the liveness monitor
// and the agent-card health sweep.
//
// Every status transition is a compare-and-swap on the workspace's version
// with its event appended in the same transaction, so a transition happens
// once however many replicas observe it. The token alone identifies a
// workspace caller: an id in a body or an X-Workspace-ID header naming another
// workspace is refused (403) and recorded as a security event, and nothing is
// written. It must never create a workspace from a register or heartbeat, and
// never revive a removed one.
package registry

package store

import (
	"encoding/json"
	"time"
)

// Workspace statuses (SPEC §5).
const (
	StatusAwaitingAgent = "awaiting_agent"
	StatusOnline        = "online"
	StatusDegraded      = "degraded"
	StatusOffline       = "offline"
	StatusPaused        = "paused"
	StatusRemoved       = "removed"
)

// Workspace is one agent role and its last known state.
type Workspace struct {
	ID       string
	Name     string
	Role     string
	ParentID string // empty for a root workspace
	URL      string
	// AgentCard is the card the agent registered (JSON), nil if none.
	AgentCard json.RawMessage
	Status    string
	// DegradedReasons is a set (sorted, no duplicates); the workspace is
	// degraded while it is non-empty.
	DegradedReasons []string
	// PauseOrigin is the workspace whose pause paused this one (itself, or an
	// ancestor when the pause cascaded); resume undoes exactly that cascade.
	PauseOrigin        string
	MaxConcurrentTasks int
	ActiveTasks        int
	CurrentTask        string
	LastHeartbeatAt    time.Time // zero when never
	LastErrorRate      float64
	LastSampleError    string
	UptimeSeconds      int64
	// ProbeFailures counts consecutive failed agent-card probes.
	ProbeFailures int
	// LastProbeAt is when any replica last recorded a probe, so that several
	// replicas sweeping together count one failure per sweep interval.
	LastProbeAt time.Time
	// OutboundSecret signs the gateway's X-Agentplane-Caller header.
	OutboundSecret []byte
	// Version increases with every write; writes are compare-and-swap on it,
	// so concurrent replicas cannot both apply a transition.
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
	UpdatedBy string
}

// WorkspaceFilter pages through workspaces in id order (UUIDv7 ids sort by
// creation time).
type WorkspaceFilter struct {
	AfterID        string
	Limit          int
	IncludeRemoved bool
}

// HierarchyNode is the part of a workspace the hierarchy rule needs.
type HierarchyNode struct {
	ID       string
	ParentID string
	Status   string
	Name     string
}

// Token kinds.
const (
	TokenAdmin     = "admin"
	TokenWorkspace = "workspace"
)

// Token is a stored credential; only its SHA-256 is kept.
type Token struct {
	ID          string
	Kind        string
	WorkspaceID string
	Name        string
	Hash        []byte
	Prefix      string
	CreatedAt   time.Time
	CreatedBy   string
	LastUsedAt  time.Time // zero when never
	RevokedAt   time.Time // zero when active
}

// TokenLookup is a token found by hash, with the status of its workspace
// (empty for admin tokens) so that a removed workspace's token is told apart.
type TokenLookup struct {
	Token
	WorkspaceStatus string
}

// TokenFilter selects tokens to list.
type TokenFilter struct {
	Kind        string
	WorkspaceID string
	AfterID     string
	Limit       int
}

// Session is a canvas login, stored hashed.
type Session struct {
	ID         string
	Hash       []byte
	TokenID    string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	LastSeenAt time.Time
}

// SessionLookup is a session with the admin token it was opened with.
type SessionLookup struct {
	Session
	TokenName    string
	TokenRevoked bool
}

// SecurityEvent records a refused or suspicious request.
type SecurityEvent struct {
	ID          int64
	Kind        string
	WorkspaceID string
	Actor       string
	ClientIP    string
	Detail      json.RawMessage
	CreatedAt   time.Time
}

// Ticket is a single-use stream credential standing for a principal.
type Ticket struct {
	Hash          []byte
	PrincipalKind string
	PrincipalName string
	WorkspaceID   string
	TokenID       string
	ExpiresAt     time.Time
}

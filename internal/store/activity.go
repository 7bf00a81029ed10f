package store

import (
	"encoding/json"
	"time"
)

// Activity is one row of a workspace's activity log (SPEC §8.1).
type Activity struct {
	ID           string
	WorkspaceID  string
	ActivityType string
	// Source is who reported it: "agent" (a workspace token) or "canvas"
	// (an admin or the platform on the canvas's behalf).
	Source            string
	SourceID          string
	TargetID          string
	Method            string
	Summary           string
	RequestBody       string
	ResponseBody      string
	RequestTruncated  bool
	ResponseTruncated bool
	Status            string
	ErrorDetail       string
	DurationMS        int64
	// Attachments is a JSON array (notify messages), nil otherwise.
	Attachments json.RawMessage
	CreatedAt   time.Time
}

// ActivityFilter pages through one workspace's activity, newest first.
type ActivityFilter struct {
	WorkspaceID string
	Type        string
	Source      string
	BeforeID    string
	Limit       int
}

// EventFilter selects persisted events for GET /events, oldest first.
type EventFilter struct {
	AfterID int64
	// UpToID, when positive, caps the ids returned (the relay's high-water
	// mark, so that pollers never skip an event that commits late).
	UpToID      int64
	WorkspaceID string
	Type        string
	Limit       int
}

// SecurityEventFilter pages through security events, newest first.
type SecurityEventFilter struct {
	BeforeID int64
	Limit    int
}

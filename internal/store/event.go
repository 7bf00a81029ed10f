package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Audience says who may see an event (SPEC §8.2). It is stored with the event
// so that replay and live delivery filter by the same rule.
type Audience string

// Audiences of the event catalogue.
const (
	// AudienceAdmin: admins (bearer or canvas session) only.
	AudienceAdmin Audience = "admin"
	// AudienceWorkspace: admins and the workspace the event is about.
	AudienceWorkspace Audience = "workspace"
	// AudienceReachable: admins and every workspace that may talk to the
	// workspace the event is about (SPEC §7.2).
	AudienceReachable Audience = "reachable"
)

// Valid reports whether a is one of the defined audiences.
func (a Audience) Valid() bool {
	switch a {
	case AudienceAdmin, AudienceWorkspace, AudienceReachable:
		return true
	}
	return false
}

// EventInput is what a writer supplies; the store assigns id and time.
type EventInput struct {
	// Type is the catalogue name, e.g. WORKSPACE_ONLINE.
	Type string
	// WorkspaceID is the workspace the event is about; empty for global events.
	WorkspaceID string
	// Audience decides visibility.
	Audience Audience
	// Payload is a JSON object with ids and short summaries, never message
	// bodies or secrets. Nil means {}.
	Payload json.RawMessage
	// Actor identifies who caused the event ("admin:<token name>",
	// "workspace:<id>", "system:<subsystem>").
	Actor string
	// DedupeKey, when set, makes the append idempotent across replicas.
	DedupeKey string
}

// Event is a persisted (or, when Ephemeral, live-only) event.
type Event struct {
	ID          int64           `json:"id"`
	Type        string          `json:"event"`
	WorkspaceID string          `json:"workspace_id,omitempty"`
	Audience    Audience        `json:"-"`
	Payload     json.RawMessage `json:"payload"`
	Actor       string          `json:"actor,omitempty"`
	CreatedAt   time.Time       `json:"timestamp"`
	// TxID is the PostgreSQL transaction id that wrote the event (0 on
	// SQLite). The stream relay uses it to compute a commit-order-safe
	// high-water mark.
	TxID uint64 `json:"-"`
	// Ephemeral events are delivered live and never stored; their ID is 0.
	Ephemeral bool `json:"-"`
	// Encoded is the envelope's JSON, filled once by the live fan-out so that
	// a thousand subscribers do not encode the same event a thousand times.
	Encoded []byte `json:"-"`
}

// Validate rejects programming errors before they reach SQL; both back ends
// call it from AppendEvent.
func (in EventInput) Validate() error {
	if in.Type == "" {
		return errors.New("append event: empty type")
	}
	if !in.Audience.Valid() {
		return fmt.Errorf("append event %s: invalid audience %q", in.Type, in.Audience)
	}
	if len(in.Payload) > 0 && !json.Valid(in.Payload) {
		return fmt.Errorf("append event %s: payload is not valid JSON", in.Type)
	}
	return nil
}

// Package audit records security events (SPEC §3, §8.2): spoof attempts,
// invalid tokens, identity mismatches, SSRF refusals. Each one is a
// security_events row and an admin-only SECURITY_EVENT event written in one
// transaction, plus a structured log line. Untrusted values go into the log
// as attribute values, never into the message, so slog escapes them (quotes,
// newlines, control characters) and they cannot forge log lines; they are
// also capped in length.
//
// It must never store or log a secret: callers pass token prefixes, never
// whole tokens.
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"unicode/utf8"

	"github.com/agentplane/agentplane/internal/store"
)

// Security event kinds.
const (
	KindInvalidToken        = "invalid_token"
	KindWorkspaceMismatch   = "workspace_id_mismatch"
	KindSourceSpoof         = "source_id_spoof"
	KindRemovedWorkspaceUse = "removed_workspace_token"
	KindURLRefused          = "agent_url_refused"
	KindCrossOrigin         = "cross_origin_refused"
)

// Recorder writes security events.
type Recorder struct {
	store store.Store
	log   *slog.Logger
}

// NewRecorder returns a recorder over st.
func NewRecorder(st store.Store, log *slog.Logger) *Recorder { return &Recorder{store: st, log: log} }

// Event is one security event to record.
type Event struct {
	Kind        string
	WorkspaceID string
	Actor       string
	ClientIP    string
	// Detail holds short, non-secret facts (claimed ids, token prefixes).
	Detail map[string]string
}

// capLen bounds an untrusted value kept in a log line or a record (at a rune
// boundary, so the result stays valid UTF-8).
func capLen(s string) string {
	if len(s) <= 200 {
		return s
	}
	cut := 200
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Quote makes an untrusted value safe to embed in a human message.
func Quote(s string) string { return strconv.Quote(capLen(s)) }

// Record stores e and its SECURITY_EVENT in one transaction and logs it. It
// returns the store error, if any; callers refusing a request still refuse it.
func (r *Recorder) Record(ctx context.Context, e Event) error {
	attrs := []any{"kind", e.Kind, "workspace_id", capLen(e.WorkspaceID), "actor", capLen(e.Actor), "client_ip", capLen(e.ClientIP)}
	for k, v := range e.Detail {
		attrs = append(attrs, k, capLen(v))
	}
	r.log.Warn("security event", attrs...)
	// Details come from the request: cap and clean them before they are
	// stored or streamed (short summaries, SPEC §8.2).
	clean := make(map[string]string, len(e.Detail))
	for k, v := range e.Detail {
		clean[k] = capLen(store.CleanText(v))
	}
	e.Detail = clean
	e.WorkspaceID, e.Actor, e.ClientIP = capLen(e.WorkspaceID), capLen(e.Actor), capLen(e.ClientIP)
	detail, err := json.Marshal(e.Detail)
	if err != nil {
		return fmt.Errorf("security event detail: %w", err)
	}
	payload, _ := json.Marshal(map[string]any{"kind": e.Kind, "workspace_id": e.WorkspaceID, "detail": e.Detail})
	return r.store.InTx(ctx, func(tx store.Tx) error {
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		id, err := tx.InsertSecurityEvent(ctx, store.SecurityEvent{
			Kind: e.Kind, WorkspaceID: e.WorkspaceID, Actor: e.Actor, ClientIP: e.ClientIP, Detail: detail, CreatedAt: now,
		})
		if err != nil {
			return err
		}
		var p map[string]any
		_ = json.Unmarshal(payload, &p)
		p["security_event_id"] = id
		payload, _ = json.Marshal(p)
		_, _, err = tx.AppendEvent(ctx, store.EventInput{
			Type: "SECURITY_EVENT", WorkspaceID: e.WorkspaceID, Audience: store.AudienceAdmin, Payload: payload, Actor: e.Actor,
		})
		return err
	})
}

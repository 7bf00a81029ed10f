package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/jackc/pgx/v5"
)

func (t *tx) InsertTicket(ctx context.Context, tk store.Ticket) error {
	if _, err := t.tx.Exec(ctx, `DELETE FROM ws_tickets WHERE expires_at < $1`, tk.ExpiresAt.Add(-time.Hour)); err != nil {
		return fmt.Errorf("prune tickets: %w", mapErr(err))
	}
	_, err := t.tx.Exec(ctx, `INSERT INTO ws_tickets (hash, principal_kind, principal_name, workspace_id, token_id, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, tk.Hash, tk.PrincipalKind, tk.PrincipalName, tk.WorkspaceID, tk.TokenID, tk.ExpiresAt)
	if err != nil {
		return fmt.Errorf("insert ticket: %w", mapErr(err))
	}
	return nil
}

// ConsumeTicket deletes the ticket and returns it when still valid.
func (s *Store) ConsumeTicket(ctx context.Context, hash []byte, now time.Time) (store.Ticket, error) {
	var tk store.Ticket
	err := s.pool.QueryRow(ctx, `DELETE FROM ws_tickets WHERE hash = $1
		RETURNING hash, principal_kind, principal_name, workspace_id, token_id, expires_at`, hash).
		Scan(&tk.Hash, &tk.PrincipalKind, &tk.PrincipalName, &tk.WorkspaceID, &tk.TokenID, &tk.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return tk, fmt.Errorf("ticket: %w", store.ErrNotFound)
	}
	if err != nil {
		return tk, fmt.Errorf("consume ticket: %w", mapErr(err))
	}
	tk.ExpiresAt = tk.ExpiresAt.UTC()
	if !now.Before(tk.ExpiresAt) {
		return store.Ticket{}, fmt.Errorf("ticket expired: %w", store.ErrNotFound)
	}
	return tk, nil
}

// PruneExpired deletes expired sessions and tickets in bounded batches.
func (s *Store) PruneExpired(ctx context.Context, now time.Time, batch int) (int64, error) {
	var total int64
	for _, q := range []string{
		`DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
		`DELETE FROM ws_tickets WHERE hash IN (SELECT hash FROM ws_tickets WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
		`DELETE FROM leases WHERE (workspace_id, slot) IN (SELECT workspace_id, slot FROM leases WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
	} {
		tag, err := s.pool.Exec(ctx, q, now, batch)
		if err != nil {
			return total, fmt.Errorf("prune expired: %w", mapErr(err))
		}
		total += tag.RowsAffected()
	}
	return total, nil
}

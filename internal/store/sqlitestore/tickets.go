package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/agentplane/agentplane/internal/store"
)

func (t *tx) InsertTicket(ctx context.Context, tk store.Ticket) error {
	if _, err := t.q.ExecContext(ctx, `DELETE FROM ws_tickets WHERE expires_at < ?`, tk.ExpiresAt.Add(-time.Hour).UnixMilli()); err != nil {
		return fmt.Errorf("prune tickets: %w", mapErr(err))
	}
	_, err := t.q.ExecContext(ctx, `INSERT INTO ws_tickets (hash, principal_kind, principal_name, workspace_id, token_id, expires_at)
		VALUES (?, ?, ?, ?, ?, ?)`, tk.Hash, tk.PrincipalKind, tk.PrincipalName, tk.WorkspaceID, tk.TokenID, tk.ExpiresAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("insert ticket: %w", mapErr(err))
	}
	return nil
}

// ConsumeTicket deletes the ticket and returns it when still valid.
func (s *Store) ConsumeTicket(ctx context.Context, hash []byte, now time.Time) (store.Ticket, error) {
	if err := s.lockWrite(ctx); err != nil {
		return store.Ticket{}, err
	}
	defer s.unlockWrite()
	var (
		tk  store.Ticket
		exp int64
	)
	err := s.w.QueryRowContext(ctx, `DELETE FROM ws_tickets WHERE hash = ?
		RETURNING hash, principal_kind, principal_name, workspace_id, token_id, expires_at`, hash).
		Scan(&tk.Hash, &tk.PrincipalKind, &tk.PrincipalName, &tk.WorkspaceID, &tk.TokenID, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return tk, fmt.Errorf("ticket: %w", store.ErrNotFound)
	}
	if err != nil {
		return tk, fmt.Errorf("consume ticket: %w", mapErr(err))
	}
	tk.ExpiresAt = time.UnixMilli(exp).UTC()
	if !now.Before(tk.ExpiresAt) {
		return store.Ticket{}, fmt.Errorf("ticket expired: %w", store.ErrNotFound)
	}
	return tk, nil
}

// PruneExpired deletes expired sessions and tickets in bounded batches.
func (s *Store) PruneExpired(ctx context.Context, now time.Time, batch int) (int64, error) {
	var total int64
	for _, q := range []string{
		`DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at < ? LIMIT ?)`,
		`DELETE FROM ws_tickets WHERE hash IN (SELECT hash FROM ws_tickets WHERE expires_at < ? LIMIT ?)`,
		`DELETE FROM leases WHERE (workspace_id, slot) IN (SELECT workspace_id, slot FROM leases WHERE expires_at < ? LIMIT ?)`,
	} {
		n, err := s.writeExec(ctx, "prune expired", q, now.UnixMilli(), batch)
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentplane/agentplane/internal/store"
	"github.com/jackc/pgx/v5"
)

const tokenCols = `t.id::text, t.kind, COALESCE(t.workspace_id::text, ''), t.name, t.hash, t.prefix, t.created_at, t.created_by, t.last_used_at, t.revoked_at`

func scanToken(row pgx.Row, extra ...any) (store.Token, error) {
	var (
		t             store.Token
		used, revoked *time.Time
	)
	dest := append([]any{&t.ID, &t.Kind, &t.WorkspaceID, &t.Name, &t.Hash, &t.Prefix, &t.CreatedAt, &t.CreatedBy, &used, &revoked}, extra...)
	if err := row.Scan(dest...); err != nil {
		return t, err
	}
	t.CreatedAt = t.CreatedAt.UTC()
	t.LastUsedAt, t.RevokedAt = fromTS(used), fromTS(revoked)
	return t, nil
}

func tokenByHash(ctx context.Context, q querier, hash []byte) (store.TokenLookup, error) {
	var l store.TokenLookup
	t, err := scanToken(q.QueryRow(ctx, `SELECT `+tokenCols+`, COALESCE(w.status, '')
		FROM tokens t LEFT JOIN workspaces w ON w.id = t.workspace_id WHERE t.hash = $1`, hash), &l.WorkspaceStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, fmt.Errorf("token: %w", store.ErrNotFound)
	}
	if err != nil {
		return l, fmt.Errorf("token by hash: %w", mapErr(err))
	}
	l.Token = t
	return l, nil
}

// TokenByHash looks a credential up by its SHA-256.
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (store.TokenLookup, error) {
	return tokenByHash(ctx, s.pool, hash)
}

// ListTokens pages by id.
func (s *Store) ListTokens(ctx context.Context, f store.TokenFilter) ([]store.Token, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	after := f.AfterID
	if after == "" {
		after = "00000000-0000-0000-0000-000000000000"
	}
	rows, err := s.pool.Query(ctx, `SELECT `+tokenCols+` FROM tokens t
		WHERE t.kind = $1 AND ($2 = '' OR t.workspace_id = NULLIF($2, '')::uuid) AND t.id > $3::uuid ORDER BY t.id LIMIT $4`,
		f.Kind, f.WorkspaceID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", mapErr(err))
	}
	defer rows.Close()
	var out []store.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list tokens: %w", mapErr(err))
		}
		out = append(out, t)
	}
	return out, mapErr(rows.Err())
}

// TouchToken records use at most once per interval.
func (s *Store) TouchToken(ctx context.Context, id string, now, notBefore time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE tokens SET last_used_at = $1
		WHERE id = $2::uuid AND (last_used_at IS NULL OR last_used_at < $3)`, now, id, notBefore)
	if err != nil {
		return fmt.Errorf("touch token: %w", mapErr(err))
	}
	return nil
}

// SessionByHash finds a session and the admin token behind it.
func (s *Store) SessionByHash(ctx context.Context, hash []byte) (store.SessionLookup, error) {
	var (
		l       store.SessionLookup
		revoked *time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT s.id::text, s.hash, s.token_id::text, s.created_at, s.expires_at, s.last_seen_at, t.name, t.revoked_at
		FROM sessions s JOIN tokens t ON t.id = s.token_id WHERE s.hash = $1`, hash).
		Scan(&l.ID, &l.Hash, &l.TokenID, &l.CreatedAt, &l.ExpiresAt, &l.LastSeenAt, &l.TokenName, &revoked)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, fmt.Errorf("session: %w", store.ErrNotFound)
	}
	if err != nil {
		return l, fmt.Errorf("session by hash: %w", mapErr(err))
	}
	l.CreatedAt, l.ExpiresAt, l.LastSeenAt = l.CreatedAt.UTC(), l.ExpiresAt.UTC(), l.LastSeenAt.UTC()
	l.TokenRevoked = revoked != nil
	return l, nil
}

// ExtendSession slides the expiry.
func (s *Store) ExtendSession(ctx context.Context, id string, expiresAt, lastSeen time.Time) error {
	if _, err := s.pool.Exec(ctx, `UPDATE sessions SET expires_at = $1, last_seen_at = $2 WHERE id = $3::uuid`, expiresAt, lastSeen, id); err != nil {
		return fmt.Errorf("extend session: %w", mapErr(err))
	}
	return nil
}

// DeleteSession logs a session out.
func (s *Store) DeleteSession(ctx context.Context, hash []byte) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE hash = $1`, hash); err != nil {
		return fmt.Errorf("delete session: %w", mapErr(err))
	}
	return nil
}

func (t *tx) InsertToken(ctx context.Context, tok store.Token) (bool, error) {
	tag, err := t.tx.Exec(ctx, `INSERT INTO tokens (id, kind, workspace_id, name, hash, prefix, created_at, created_by)
		VALUES ($1::uuid, $2, NULLIF($3, '')::uuid, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
		tok.ID, tok.Kind, tok.WorkspaceID, tok.Name, tok.Hash, tok.Prefix, tok.CreatedAt, tok.CreatedBy)
	if err != nil {
		return false, fmt.Errorf("insert token: %w", mapErr(err))
	}
	return tag.RowsAffected() == 1, nil
}

func (t *tx) TokenByHash(ctx context.Context, hash []byte) (store.TokenLookup, error) {
	return tokenByHash(ctx, t.tx, hash)
}

func (t *tx) RevokeToken(ctx context.Context, id, kind, workspaceID string, now time.Time) error {
	tag, err := t.tx.Exec(ctx, `UPDATE tokens SET revoked_at = $1
		WHERE id = $2::uuid AND kind = $3 AND ($4 = '' OR workspace_id = NULLIF($4, '')::uuid) AND revoked_at IS NULL`,
		now, id, kind, workspaceID)
	if err != nil {
		return fmt.Errorf("revoke token: %w", mapErr(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("token %s: %w", id, store.ErrNotFound)
	}
	return nil
}

func (t *tx) RevokeWorkspaceTokens(ctx context.Context, workspaceID string, now time.Time) error {
	if _, err := t.tx.Exec(ctx, `UPDATE tokens SET revoked_at = $1 WHERE workspace_id = $2::uuid AND revoked_at IS NULL`, now, workspaceID); err != nil {
		return fmt.Errorf("revoke workspace tokens: %w", mapErr(err))
	}
	return nil
}

func (t *tx) CountActiveAdminTokens(ctx context.Context) (int, error) {
	var n int
	if err := t.tx.QueryRow(ctx, `SELECT COUNT(*) FROM (
		SELECT 1 FROM tokens WHERE kind = 'admin' AND revoked_at IS NULL ORDER BY id FOR UPDATE) active`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count admin tokens: %w", mapErr(err))
	}
	return n, nil
}

func (t *tx) InsertSession(ctx context.Context, s store.Session) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO sessions (id, hash, token_id, created_at, expires_at, last_seen_at)
		VALUES ($1::uuid, $2, $3::uuid, $4, $5, $6)`, s.ID, s.Hash, s.TokenID, s.CreatedAt, s.ExpiresAt, s.LastSeenAt)
	if err != nil {
		return fmt.Errorf("insert session: %w", mapErr(err))
	}
	return nil
}

func (t *tx) InsertSecurityEvent(ctx context.Context, e store.SecurityEvent) (int64, error) {
	detail := string(e.Detail)
	if detail == "" {
		detail = "{}"
	}
	var id int64
	err := t.tx.QueryRow(ctx, `INSERT INTO security_events (kind, workspace_id, actor, client_ip, detail, created_at)
		VALUES ($1, NULLIF($2, '')::uuid, $3, $4, $5::jsonb, $6) RETURNING id`,
		e.Kind, e.WorkspaceID, e.Actor, e.ClientIP, detail, e.CreatedAt).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("insert security event: %w", mapErr(err))
	}
	return id, nil
}

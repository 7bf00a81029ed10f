package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/agentplane/agentplane/internal/store"
)

const tokenCols = `t.id, t.kind, COALESCE(t.workspace_id, ''), t.name, t.hash, t.prefix, t.created_at, t.created_by, t.last_used_at, t.revoked_at`

func scanToken(row scanner, extra ...any) (store.Token, error) {
	var (
		t             store.Token
		created       int64
		used, revoked sql.NullInt64
	)
	dest := append([]any{&t.ID, &t.Kind, &t.WorkspaceID, &t.Name, &t.Hash, &t.Prefix, &created, &t.CreatedBy, &used, &revoked}, extra...)
	if err := row.Scan(dest...); err != nil {
		return t, err
	}
	t.CreatedAt = time.UnixMilli(created).UTC()
	t.LastUsedAt = fromMS(used)
	t.RevokedAt = fromMS(revoked)
	return t, nil
}

func tokenByHash(ctx context.Context, q querier, hash []byte) (store.TokenLookup, error) {
	var l store.TokenLookup
	t, err := scanToken(q.QueryRowContext(ctx, `SELECT `+tokenCols+`, COALESCE(w.status, '')
		FROM tokens t LEFT JOIN workspaces w ON w.id = t.workspace_id WHERE t.hash = ?`, hash), &l.WorkspaceStatus)
	if errors.Is(err, sql.ErrNoRows) {
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
	return tokenByHash(ctx, s.r, hash)
}

// ListTokens pages by id.
func (s *Store) ListTokens(ctx context.Context, f store.TokenFilter) ([]store.Token, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+tokenCols+` FROM tokens t
		WHERE t.kind = ? AND (? = '' OR t.workspace_id = ?) AND t.id > ? ORDER BY t.id LIMIT ?`,
		f.Kind, f.WorkspaceID, f.WorkspaceID, f.AfterID, limit)
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
	_, err := s.writeExec(ctx, "touch token", `UPDATE tokens SET last_used_at = ?
		WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)`, now.UnixMilli(), id, notBefore.UnixMilli())
	return err
}

// SessionByHash finds a session and the admin token behind it.
func (s *Store) SessionByHash(ctx context.Context, hash []byte) (store.SessionLookup, error) {
	var (
		l                      store.SessionLookup
		created, expires, seen int64
		revoked                sql.NullInt64
	)
	err := s.r.QueryRowContext(ctx, `SELECT s.id, s.hash, s.token_id, s.created_at, s.expires_at, s.last_seen_at, t.name, t.revoked_at
		FROM sessions s JOIN tokens t ON t.id = s.token_id WHERE s.hash = ?`, hash).
		Scan(&l.ID, &l.Hash, &l.TokenID, &created, &expires, &seen, &l.TokenName, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return l, fmt.Errorf("session: %w", store.ErrNotFound)
	}
	if err != nil {
		return l, fmt.Errorf("session by hash: %w", mapErr(err))
	}
	l.CreatedAt, l.ExpiresAt, l.LastSeenAt = time.UnixMilli(created).UTC(), time.UnixMilli(expires).UTC(), time.UnixMilli(seen).UTC()
	l.TokenRevoked = revoked.Valid
	return l, nil
}

// ExtendSession slides the expiry.
func (s *Store) ExtendSession(ctx context.Context, id string, expiresAt, lastSeen time.Time) error {
	_, err := s.writeExec(ctx, "extend session", `UPDATE sessions SET expires_at = ?, last_seen_at = ? WHERE id = ?`,
		expiresAt.UnixMilli(), lastSeen.UnixMilli(), id)
	return err
}

// DeleteSession logs a session out.
func (s *Store) DeleteSession(ctx context.Context, hash []byte) error {
	_, err := s.writeExec(ctx, "delete session", `DELETE FROM sessions WHERE hash = ?`, hash)
	return err
}

func (t *tx) InsertToken(ctx context.Context, tok store.Token) (bool, error) {
	res, err := t.q.ExecContext(ctx, `INSERT INTO tokens (id, kind, workspace_id, name, hash, prefix, created_at, created_by)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		tok.ID, tok.Kind, nullString(tok.WorkspaceID), tok.Name, tok.Hash, tok.Prefix, tok.CreatedAt.UnixMilli(), tok.CreatedBy)
	if err != nil {
		return false, fmt.Errorf("insert token: %w", mapErr(err))
	}
	n, err := res.RowsAffected()
	return n == 1, mapErr(err)
}

func (t *tx) TokenByHash(ctx context.Context, hash []byte) (store.TokenLookup, error) {
	return tokenByHash(ctx, t.q, hash)
}

func (t *tx) RevokeToken(ctx context.Context, id, kind, workspaceID string, now time.Time) error {
	res, err := t.q.ExecContext(ctx, `UPDATE tokens SET revoked_at = ?
		WHERE id = ? AND kind = ? AND (? = '' OR workspace_id = ?) AND revoked_at IS NULL`,
		now.UnixMilli(), id, kind, workspaceID, workspaceID)
	if err != nil {
		return fmt.Errorf("revoke token: %w", mapErr(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("token %s: %w", id, store.ErrNotFound)
	}
	return nil
}

func (t *tx) RevokeWorkspaceTokens(ctx context.Context, workspaceID string, now time.Time) error {
	_, err := t.q.ExecContext(ctx, `UPDATE tokens SET revoked_at = ? WHERE workspace_id = ? AND revoked_at IS NULL`,
		now.UnixMilli(), workspaceID)
	if err != nil {
		return fmt.Errorf("revoke workspace tokens: %w", mapErr(err))
	}
	return nil
}

func (t *tx) CountActiveAdminTokens(ctx context.Context) (int, error) {
	var n int
	err := t.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM tokens WHERE kind = 'admin' AND revoked_at IS NULL`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count admin tokens: %w", mapErr(err))
	}
	return n, nil
}

func (t *tx) InsertSession(ctx context.Context, s store.Session) error {
	_, err := t.q.ExecContext(ctx, `INSERT INTO sessions (id, hash, token_id, created_at, expires_at, last_seen_at)
		VALUES (?, ?, ?, ?, ?, ?)`, s.ID, s.Hash, s.TokenID, s.CreatedAt.UnixMilli(), s.ExpiresAt.UnixMilli(), s.LastSeenAt.UnixMilli())
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
	err := t.q.QueryRowContext(ctx, `INSERT INTO security_events (kind, workspace_id, actor, client_ip, detail, created_at)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`, e.Kind, nullString(e.WorkspaceID), e.Actor, e.ClientIP, detail, e.CreatedAt.UnixMilli()).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("insert security event: %w", mapErr(err))
	}
	return id, nil
}

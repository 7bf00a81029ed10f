-- Single-use, 60-second tickets for WebSocket and SSE clients that cannot set
-- headers (browsers). Stored hashed; consumed by a DELETE … RETURNING, so one
-- use wins even if the same ticket is presented twice at once.
CREATE TABLE ws_tickets (
    hash           BYTEA       PRIMARY KEY,
    principal_kind TEXT        NOT NULL,
    principal_name TEXT        NOT NULL DEFAULT '',
    workspace_id   TEXT        NOT NULL DEFAULT '',
    token_id       TEXT        NOT NULL DEFAULT '',
    expires_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX ws_tickets_expires_at ON ws_tickets (expires_at);

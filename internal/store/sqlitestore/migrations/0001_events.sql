-- Events are the outbox (SPEC §2): written in the same transaction as the state
-- change they describe. AUTOINCREMENT guarantees an id is never handed out
-- twice, even after retention deleted the newest rows, so a client resuming
-- with ?since=<id> can never miss a reused id.
CREATE TABLE events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    type         TEXT    NOT NULL,
    workspace_id TEXT,
    audience     TEXT    NOT NULL,
    payload      TEXT    NOT NULL DEFAULT '{}',
    actor        TEXT    NOT NULL DEFAULT '',
    dedupe_key   TEXT    UNIQUE,
    created_at   INTEGER NOT NULL -- unix milliseconds (UTC)
);
CREATE INDEX events_created_at ON events (created_at);
CREATE INDEX events_workspace_id ON events (workspace_id, id);

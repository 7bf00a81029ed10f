-- Workspaces, credentials and the audit of refused requests (SPEC §3, §5, §9).
-- Every workspace write is a compare-and-swap on version, so a status
-- transition observed by two writers is applied once.
CREATE TABLE workspaces (
    id                   TEXT    PRIMARY KEY,
    name                 TEXT    NOT NULL,
    role                 TEXT    NOT NULL DEFAULT '',
    parent_id            TEXT    REFERENCES workspaces (id),
    url                  TEXT    NOT NULL DEFAULT '',
    agent_card           TEXT,
    status               TEXT    NOT NULL,
    degraded_reasons     TEXT    NOT NULL DEFAULT '[]',
    pause_origin         TEXT    NOT NULL DEFAULT '',
    max_concurrent_tasks INTEGER NOT NULL DEFAULT 1,
    active_tasks         INTEGER NOT NULL DEFAULT 0,
    current_task         TEXT    NOT NULL DEFAULT '',
    last_heartbeat_at    INTEGER,
    last_error_rate      REAL    NOT NULL DEFAULT 0,
    last_sample_error    TEXT    NOT NULL DEFAULT '',
    uptime_seconds       INTEGER NOT NULL DEFAULT 0,
    probe_failures       INTEGER NOT NULL DEFAULT 0,
    outbound_secret      BLOB    NOT NULL,
    version              INTEGER NOT NULL DEFAULT 1,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    updated_by           TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX workspaces_parent_id ON workspaces (parent_id);
-- The liveness monitor's query: online/degraded by oldest heartbeat.
CREATE INDEX workspaces_liveness ON workspaces (status, last_heartbeat_at);

CREATE TABLE tokens (
    id           TEXT    PRIMARY KEY,
    kind         TEXT    NOT NULL CHECK (kind IN ('admin', 'workspace')),
    workspace_id TEXT    REFERENCES workspaces (id),
    name         TEXT    NOT NULL DEFAULT '',
    hash         BLOB    NOT NULL UNIQUE,
    prefix       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    created_by   TEXT    NOT NULL DEFAULT '',
    last_used_at INTEGER,
    revoked_at   INTEGER
);
-- Active admin token names are unique: the bootstrap token is created
-- insert-if-absent, so of several replicas starting at once one wins.
CREATE UNIQUE INDEX tokens_active_admin_name ON tokens (name) WHERE kind = 'admin' AND revoked_at IS NULL;
CREATE INDEX tokens_workspace_id ON tokens (workspace_id);

CREATE TABLE sessions (
    id           TEXT    PRIMARY KEY,
    hash         BLOB    NOT NULL UNIQUE,
    token_id     TEXT    NOT NULL REFERENCES tokens (id),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE security_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT    NOT NULL,
    workspace_id TEXT,
    actor        TEXT    NOT NULL DEFAULT '',
    client_ip    TEXT    NOT NULL DEFAULT '',
    detail       TEXT    NOT NULL DEFAULT '{}',
    created_at   INTEGER NOT NULL
);
CREATE INDEX security_events_created_at ON security_events (created_at);

CREATE TABLE meta (
    key   TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO meta (key, value) VALUES ('hierarchy_version', 1);

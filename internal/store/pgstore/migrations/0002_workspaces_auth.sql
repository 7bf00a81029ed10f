-- Workspaces, credentials and the audit of refused requests (SPEC §3, §5, §9).
-- Every workspace write is a compare-and-swap on version, so a status
-- transition observed by two replicas is applied once.
CREATE TABLE workspaces (
    id                   UUID        PRIMARY KEY,
    name                 TEXT        NOT NULL,
    role                 TEXT        NOT NULL DEFAULT '',
    parent_id            UUID        REFERENCES workspaces (id),
    url                  TEXT        NOT NULL DEFAULT '',
    agent_card           JSONB,
    status               TEXT        NOT NULL,
    degraded_reasons     JSONB       NOT NULL DEFAULT '[]',
    pause_origin         TEXT        NOT NULL DEFAULT '',
    max_concurrent_tasks INTEGER     NOT NULL DEFAULT 1,
    active_tasks         INTEGER     NOT NULL DEFAULT 0,
    current_task         TEXT        NOT NULL DEFAULT '',
    last_heartbeat_at    TIMESTAMPTZ,
    last_error_rate      DOUBLE PRECISION NOT NULL DEFAULT 0,
    last_sample_error    TEXT        NOT NULL DEFAULT '',
    uptime_seconds       BIGINT      NOT NULL DEFAULT 0,
    probe_failures       INTEGER     NOT NULL DEFAULT 0,
    outbound_secret      BYTEA       NOT NULL,
    version              BIGINT      NOT NULL DEFAULT 1,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL,
    updated_by           TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX workspaces_parent_id ON workspaces (parent_id);
CREATE INDEX workspaces_liveness ON workspaces (status, last_heartbeat_at);

CREATE TABLE tokens (
    id           UUID        PRIMARY KEY,
    kind         TEXT        NOT NULL CHECK (kind IN ('admin', 'workspace')),
    workspace_id UUID        REFERENCES workspaces (id),
    name         TEXT        NOT NULL DEFAULT '',
    hash         BYTEA       NOT NULL UNIQUE,
    prefix       TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    created_by   TEXT        NOT NULL DEFAULT '',
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE UNIQUE INDEX tokens_active_admin_name ON tokens (name) WHERE kind = 'admin' AND revoked_at IS NULL;
CREATE INDEX tokens_workspace_id ON tokens (workspace_id);

CREATE TABLE sessions (
    id           UUID        PRIMARY KEY,
    hash         BYTEA       NOT NULL UNIQUE,
    token_id     UUID        NOT NULL REFERENCES tokens (id),
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE security_events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         TEXT        NOT NULL,
    workspace_id UUID,
    actor        TEXT        NOT NULL DEFAULT '',
    client_ip    TEXT        NOT NULL DEFAULT '',
    detail       JSONB       NOT NULL DEFAULT '{}',
    created_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX security_events_created_at ON security_events (created_at);

CREATE TABLE meta (
    key   TEXT   PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('hierarchy_version', 1);

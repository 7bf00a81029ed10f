-- The activity log (SPEC §8.1). Ids are UUIDv7, so id order is time order and
-- the newest-first cursor (?before=<id>) needs only the primary key.
CREATE TABLE activity_logs (
    id                 UUID        PRIMARY KEY,
    workspace_id       UUID        NOT NULL,
    activity_type      TEXT        NOT NULL,
    source             TEXT        NOT NULL,
    source_id          TEXT        NOT NULL DEFAULT '',
    target_id          TEXT        NOT NULL DEFAULT '',
    method             TEXT        NOT NULL DEFAULT '',
    summary            TEXT        NOT NULL DEFAULT '',
    request_body       TEXT        NOT NULL DEFAULT '',
    response_body      TEXT        NOT NULL DEFAULT '',
    request_truncated  BOOLEAN     NOT NULL DEFAULT false,
    response_truncated BOOLEAN     NOT NULL DEFAULT false,
    status             TEXT        NOT NULL DEFAULT '',
    error_detail       TEXT        NOT NULL DEFAULT '',
    duration_ms        BIGINT      NOT NULL DEFAULT 0,
    attachments        JSONB,
    created_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX activity_logs_workspace ON activity_logs (workspace_id, id);
CREATE INDEX activity_logs_created_at ON activity_logs (created_at);
CREATE INDEX events_type_id ON events (type, id);

-- Probes are recorded at most once per sweep interval across replicas.
ALTER TABLE workspaces ADD COLUMN last_probe_at TIMESTAMPTZ;

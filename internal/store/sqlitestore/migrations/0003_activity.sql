-- The activity log (SPEC §8.1). Ids are UUIDv7, so id order is time order and
-- the newest-first cursor (?before=<id>) needs only the primary key.
CREATE TABLE activity_logs (
    id                 TEXT    PRIMARY KEY,
    workspace_id       TEXT    NOT NULL,
    activity_type      TEXT    NOT NULL,
    source             TEXT    NOT NULL,
    source_id          TEXT    NOT NULL DEFAULT '',
    target_id          TEXT    NOT NULL DEFAULT '',
    method             TEXT    NOT NULL DEFAULT '',
    summary            TEXT    NOT NULL DEFAULT '',
    request_body       TEXT    NOT NULL DEFAULT '',
    response_body      TEXT    NOT NULL DEFAULT '',
    request_truncated  INTEGER NOT NULL DEFAULT 0,
    response_truncated INTEGER NOT NULL DEFAULT 0,
    status             TEXT    NOT NULL DEFAULT '',
    error_detail       TEXT    NOT NULL DEFAULT '',
    duration_ms        INTEGER NOT NULL DEFAULT 0,
    attachments        TEXT,
    created_at         INTEGER NOT NULL
);
CREATE INDEX activity_logs_workspace ON activity_logs (workspace_id, id);
CREATE INDEX activity_logs_created_at ON activity_logs (created_at);
CREATE INDEX events_type_id ON events (type, id);
CREATE INDEX security_events_id_desc ON security_events (id DESC);

-- Probes are recorded at most once per sweep interval across replicas.
ALTER TABLE workspaces ADD COLUMN last_probe_at INTEGER;

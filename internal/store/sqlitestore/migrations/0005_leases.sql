-- Capacity leases (SPEC §7.3): one row per occupied max_concurrent_tasks
-- slot. The primary key (workspace_id, slot) is what makes two replicas unable
-- to hold the same slot; an expired row is taken over in place.
CREATE TABLE leases (
    workspace_id TEXT    NOT NULL,
    slot         INTEGER NOT NULL,
    id           TEXT    NOT NULL UNIQUE,
    holder       TEXT    NOT NULL,
    purpose      TEXT    NOT NULL,
    ref          TEXT    NOT NULL DEFAULT '',
    acquired_at  INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, slot)
) WITHOUT ROWID;
CREATE INDEX leases_holder ON leases (holder);
CREATE INDEX leases_expires_at ON leases (expires_at);

-- Events are the outbox (SPEC §2). Identity columns draw from a sequence, which
-- never hands out a value twice, so ids are never reused. txid records the
-- writing transaction (xid8) so that the stream relay can compute a high-water
-- mark that is safe against out-of-order commits (SPEC §8.3).
CREATE TABLE events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type         TEXT        NOT NULL,
    workspace_id UUID,
    audience     TEXT        NOT NULL,
    payload      JSONB       NOT NULL DEFAULT '{}',
    actor        TEXT        NOT NULL DEFAULT '',
    dedupe_key   TEXT        UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    txid         xid8        NOT NULL
);
CREATE INDEX events_created_at ON events (created_at);
CREATE INDEX events_workspace_id ON events (workspace_id, id);

-- Schedules and their history (SPEC §3, §6). The scheduler's definition and
-- bookkeeping are JSON the store does not interpret; the columns are what
-- the claim loop and the API query.
CREATE TABLE schedules (
    id           UUID        PRIMARY KEY,
    workspace_id UUID        NOT NULL REFERENCES workspaces (id),
    name         TEXT        NOT NULL,
    spec         JSONB       NOT NULL,
    state        JSONB       NOT NULL DEFAULT '{}',
    enabled      BOOLEAN     NOT NULL DEFAULT TRUE,
    next_run_at  TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    updated_by   TEXT        NOT NULL DEFAULT '',
    deleted_at   TIMESTAMPTZ
);
-- One live schedule per (workspace, name).
CREATE UNIQUE INDEX schedules_name ON schedules (workspace_id, name) WHERE deleted_at IS NULL;
-- The claim path: only enabled, live schedules with a next fire time.
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE enabled AND deleted_at IS NULL AND next_run_at IS NOT NULL;

CREATE TABLE schedule_runs (
    id               UUID        PRIMARY KEY,
    schedule_id      UUID        NOT NULL REFERENCES schedules (id),
    workspace_id     UUID        NOT NULL,
    slot_time        TIMESTAMPTZ NOT NULL,
    scheduled_time   TIMESTAMPTZ NOT NULL,
    trigger          TEXT        NOT NULL,
    status           TEXT        NOT NULL,
    attempt          INTEGER     NOT NULL DEFAULT 0,
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    duration_ms      BIGINT      NOT NULL DEFAULT 0,
    reason           TEXT        NOT NULL DEFAULT '',
    error_detail     TEXT        NOT NULL DEFAULT '',
    response_preview TEXT        NOT NULL DEFAULT '',
    response_body    TEXT        NOT NULL DEFAULT '',
    empty_reply      BOOLEAN     NOT NULL DEFAULT FALSE,
    wait_ms          BIGINT      NOT NULL DEFAULT 0,
    claimed_by       TEXT        NOT NULL DEFAULT '',
    lease_expires_at TIMESTAMPTZ,
    missed_until     TIMESTAMPTZ,
    missed_count     INTEGER     NOT NULL DEFAULT 0,
    message_id       TEXT        NOT NULL DEFAULT '',
    task_id          TEXT        NOT NULL DEFAULT '',
    created_at       TIMESTAMPTZ NOT NULL
);
-- The last guard of "one run per slot" for scheduled and caught-up slots.
CREATE UNIQUE INDEX schedule_runs_slot ON schedule_runs (schedule_id, slot_time) WHERE trigger IN ('schedule', 'catchup');
CREATE INDEX schedule_runs_history ON schedule_runs (schedule_id, id);
-- Runs in flight, for the lease sweep and the overlap check.
CREATE INDEX schedule_runs_active ON schedule_runs (lease_expires_at) WHERE status IN ('pending', 'running');
CREATE INDEX schedule_runs_active_schedule ON schedule_runs (schedule_id) WHERE status IN ('pending', 'running');

-- Recurring runs made from chat, and one row per fire time: the primary key
-- on (schedule_id, fire_at) is what stops two instances firing a time twice.
CREATE TABLE schedules (
    id          TEXT PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts (id),
    status      TEXT    NOT NULL CHECK (status IN ('proposed', 'active', 'paused', 'deleted')),
    next_run_at INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    body        TEXT    NOT NULL
);
CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE status = 'active';
CREATE INDEX schedules_account_idx ON schedules (account_id);

CREATE TABLE schedule_fires (
    schedule_id TEXT    NOT NULL REFERENCES schedules (id),
    fire_at     INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    run_id      TEXT    NOT NULL DEFAULT '',
    note        TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (schedule_id, fire_at)
);

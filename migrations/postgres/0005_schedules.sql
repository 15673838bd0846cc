-- Recurring runs made from chat, and one row per fire time: the primary key
-- on (schedule_id, fire_at) is what stops two instances firing a time twice.
CREATE TABLE schedules (
    id          text PRIMARY KEY,
    account_id  bigint NOT NULL REFERENCES accounts (id),
    status      text   NOT NULL CHECK (status IN ('proposed', 'active', 'paused', 'deleted')),
    next_run_at timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    body        jsonb  NOT NULL
);
CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE status = 'active';
CREATE INDEX schedules_account_idx ON schedules (account_id);

CREATE TABLE schedule_fires (
    schedule_id text NOT NULL REFERENCES schedules (id),
    fire_at     timestamptz NOT NULL,
    outcome     text NOT NULL,
    run_id      text NOT NULL DEFAULT '',
    note        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (schedule_id, fire_at)
);

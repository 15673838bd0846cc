-- Quotes and runs. The columns the database filters on are columns; the rest
-- of each object is a JSON body owned by the research package.
CREATE TABLE quotes (
    id         text PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id),
    status     text   NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    body       jsonb  NOT NULL
);

CREATE TABLE runs (
    id         text PRIMARY KEY,
    quote_id   text   NOT NULL UNIQUE REFERENCES quotes (id),
    account_id bigint NOT NULL REFERENCES accounts (id),
    state      text   NOT NULL CHECK (state IN ('queued', 'running', 'pausing', 'paused', 'cancelling',
                                               'succeeded', 'partial', 'failed', 'cancelled', 'expired')),
    hold_id    bigint NOT NULL REFERENCES holds (id),
    job_id     bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    body       jsonb  NOT NULL
);
CREATE INDEX runs_account_idx ON runs (account_id, created_at DESC);
CREATE INDEX runs_live_idx ON runs (state, updated_at)
    WHERE state NOT IN ('succeeded', 'partial', 'failed', 'cancelled', 'expired');

CREATE TABLE run_transitions (
    id         bigserial PRIMARY KEY,
    run_id     text NOT NULL REFERENCES runs (id),
    from_state text NOT NULL,
    to_state   text NOT NULL,
    actor      text NOT NULL,
    reason     text NOT NULL,
    at         timestamptz NOT NULL
);
CREATE INDEX run_transitions_run_idx ON run_transitions (run_id, id);

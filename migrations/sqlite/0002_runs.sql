-- Quotes and runs. The columns the database filters on are columns; the rest
-- of each object is a JSON body owned by the research package.
CREATE TABLE quotes (
    id         TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    status     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    body       TEXT    NOT NULL
);

CREATE TABLE runs (
    id         TEXT PRIMARY KEY,
    quote_id   TEXT    NOT NULL UNIQUE REFERENCES quotes (id),
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    state      TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'pausing', 'paused', 'cancelling',
                                               'succeeded', 'partial', 'failed', 'cancelled', 'expired')),
    hold_id    INTEGER NOT NULL REFERENCES holds (id),
    job_id     INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    body       TEXT    NOT NULL
);
CREATE INDEX runs_account_idx ON runs (account_id, created_at DESC);
CREATE INDEX runs_live_idx ON runs (state, updated_at)
    WHERE state NOT IN ('succeeded', 'partial', 'failed', 'cancelled', 'expired');

CREATE TABLE run_transitions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     TEXT NOT NULL REFERENCES runs (id),
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    actor      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX run_transitions_run_idx ON run_transitions (run_id, id);

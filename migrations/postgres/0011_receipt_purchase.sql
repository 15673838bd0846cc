-- What a receipt paid for, in words: the kind of run, its symbols (or
-- watchlist), its depth, and the schedule that started it, if any.
ALTER TABLE receipts ADD COLUMN purchase TEXT NOT NULL DEFAULT '';

-- What settled runs used against what their quotes estimated, per route,
-- depth and symbol count: quotes are calibrated on it (research/calibration.go).
CREATE TABLE quote_observations (
    id          bigserial PRIMARY KEY,
    run_id      text    NOT NULL UNIQUE,
    route       text    NOT NULL,
    depth       text    NOT NULL,
    symbols     integer NOT NULL,
    est_in      bigint  NOT NULL,
    est_out     bigint  NOT NULL,
    used_in     bigint  NOT NULL,
    used_out    bigint  NOT NULL,
    runtime_ms  bigint  NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX quote_observations_key_idx ON quote_observations (route, depth, symbols, id DESC);

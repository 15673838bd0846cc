-- What a receipt paid for, in words: the kind of run, its symbols (or
-- watchlist), its depth, and the schedule that started it, if any.
ALTER TABLE receipts ADD COLUMN purchase TEXT NOT NULL DEFAULT '';

-- What settled runs used against what their quotes estimated, per route,
-- depth and symbol count: quotes are calibrated on it (research/calibration.go).
CREATE TABLE quote_observations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT    NOT NULL UNIQUE,
    route       TEXT    NOT NULL,
    depth       TEXT    NOT NULL,
    symbols     INTEGER NOT NULL,
    est_in      INTEGER NOT NULL,
    est_out     INTEGER NOT NULL,
    used_in     INTEGER NOT NULL,
    used_out    INTEGER NOT NULL,
    runtime_ms  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX quote_observations_key_idx ON quote_observations (route, depth, symbols, id DESC);

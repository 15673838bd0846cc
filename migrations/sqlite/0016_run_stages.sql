-- A run's stages each write their text once, into a row of their own, and
-- what changes as they finish (usage, reservations, stages done) is a small
-- progress column: a stage's write sends neither the run's body nor the
-- earlier stages' text. version is the run's version (every write adds one),
-- so a write based on a run as read can be refused when the run moved.
CREATE TABLE run_stages (
    run_id TEXT    NOT NULL REFERENCES runs (id),
    idx    INTEGER NOT NULL,
    output TEXT    NOT NULL,
    PRIMARY KEY (run_id, idx)
) WITHOUT ROWID;
ALTER TABLE runs ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN progress TEXT;
UPDATE runs SET version = COALESCE(json_extract(body, '$.version'), 0);
INSERT INTO run_stages (run_id, idx, output)
    SELECT r.id, CAST(o.key AS INTEGER), o.value
    FROM runs r, json_each(r.body, '$.outputs') o
    WHERE json_type(r.body, '$.outputs') = 'object';

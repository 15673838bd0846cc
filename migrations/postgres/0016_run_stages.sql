-- A run's stages each write their text once, into a row of their own, and
-- what changes as they finish (usage, reservations, stages done) is a small
-- progress column: a stage's write sends neither the run's body nor the
-- earlier stages' text. version is the run's version (every write adds one),
-- so a write based on a run as read can be refused when the run moved.
CREATE TABLE run_stages (
    run_id text    NOT NULL REFERENCES runs (id),
    idx    integer NOT NULL,
    output text    NOT NULL,
    PRIMARY KEY (run_id, idx)
);
ALTER TABLE runs ADD COLUMN version bigint NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN progress text;
UPDATE runs SET version = COALESCE((body->>'version')::bigint, 0);
INSERT INTO run_stages (run_id, idx, output)
    SELECT r.id, o.key::integer, o.value
    FROM runs r, jsonb_each_text(CASE WHEN jsonb_typeof(r.body->'outputs') = 'object' THEN r.body->'outputs' ELSE '{}'::jsonb END) o;

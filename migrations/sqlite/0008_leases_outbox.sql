-- Crash recovery and durable messages.
-- A run's lease: the instance executing it renews lease_until every few
-- seconds; a run whose lease lapsed (its process died) is taken over by a
-- watcher on any instance. Writes made under a lease are refused once it moved.
ALTER TABLE runs ADD COLUMN lease_owner TEXT;
ALTER TABLE runs ADD COLUMN lease_until INTEGER;
CREATE INDEX runs_lease_idx ON runs (lease_until) WHERE lease_until IS NOT NULL;

-- What each run's message shows, across instances: the newest view version
-- sent, when its final view went out (after which no other view is sent), and
-- until when a non-final view is being sent (a final waits for it).
CREATE TABLE run_views (
    run_id     TEXT PRIMARY KEY,
    version    INTEGER NOT NULL DEFAULT 0,
    final_at   INTEGER,
    busy_until INTEGER
);

-- Final messages (and notices) due for delivery, kept until delivered so a
-- crash or a platform outage cannot lose them. An instance claims a row while
-- it delivers it; a claim that lapsed is taken by another instance.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    platform     TEXT   NOT NULL,
    msg_key      TEXT   NOT NULL,
    run_id       TEXT   NOT NULL DEFAULT '',
    version      INTEGER NOT NULL DEFAULT 0,
    body         TEXT   NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    claimed_by   TEXT   NOT NULL DEFAULT '',
    claim_until  INTEGER NOT NULL,
    done_at      INTEGER,
    delivered    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_pending_idx ON outbox (platform, claim_until) WHERE done_at IS NULL;

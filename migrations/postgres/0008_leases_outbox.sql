-- Crash recovery and durable messages.
-- A run's lease: the instance executing it renews lease_until every few
-- seconds; a run whose lease lapsed (its process died) is taken over by a
-- watcher on any instance. Writes made under a lease are refused once it moved.
ALTER TABLE runs ADD COLUMN lease_owner text;
ALTER TABLE runs ADD COLUMN lease_until timestamptz;
CREATE INDEX runs_lease_idx ON runs (lease_until) WHERE lease_until IS NOT NULL;

-- What each run's message shows, across instances: the newest view version
-- sent, when its final view went out (after which no other view is sent), and
-- until when a non-final view is being sent (a final waits for it).
CREATE TABLE run_views (
    run_id     text PRIMARY KEY,
    version    bigint NOT NULL DEFAULT 0,
    final_at   timestamptz,
    busy_until timestamptz
);

-- Final messages (and notices) due for delivery, kept until delivered so a
-- crash or a platform outage cannot lose them. An instance claims a row while
-- it delivers it; a claim that lapsed is taken by another instance.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    platform     text   NOT NULL,
    msg_key      text   NOT NULL,
    run_id       text   NOT NULL DEFAULT '',
    version      bigint NOT NULL DEFAULT 0,
    body         jsonb  NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL,
    claimed_by   text   NOT NULL DEFAULT '',
    claim_until  timestamptz NOT NULL,
    done_at      timestamptz,
    delivered    boolean NOT NULL DEFAULT false
);
CREATE INDEX outbox_pending_idx ON outbox (platform, claim_until) WHERE done_at IS NULL;

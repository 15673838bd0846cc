-- Route limits (issue 16): every instance's model calls on a route with
-- limits wait in one line and are admitted within them. A ticket is one call:
-- waiting (admitted_at NULL), in flight (admitted, not left) or ended; it
-- counts while seen_until is ahead (its process renews it), and an admission
-- counts in the route's per-minute figures for a minute. route_gates holds
-- each route's AIMD factor (halved by a 429, growing back) and the pause a
-- 429's Retry-After asked for; its row is the lock admissions take.
CREATE TABLE route_gates (
    route        text PRIMARY KEY,
    factor       double precision NOT NULL DEFAULT 1,
    factor_at    timestamptz NOT NULL,
    paused_until timestamptz NOT NULL
);
CREATE TABLE route_tickets (
    id          bigserial PRIMARY KEY,
    route       text   NOT NULL,
    tokens      bigint NOT NULL,
    created_at  timestamptz NOT NULL,
    seen_until  timestamptz NOT NULL,
    admitted_at timestamptz,
    left_at     timestamptz
);
CREATE INDEX route_tickets_waiting_idx ON route_tickets (route, id) WHERE admitted_at IS NULL AND left_at IS NULL;
CREATE INDEX route_tickets_admitted_idx ON route_tickets (route, admitted_at) WHERE admitted_at IS NOT NULL;

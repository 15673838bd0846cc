-- Attempts to redeem a link code, kept to limit guessing across restarts
-- and instances.
CREATE TABLE link_attempts (
    id          bigserial PRIMARY KEY,
    platform    text NOT NULL,
    external_id text NOT NULL,
    at          timestamptz NOT NULL
);
CREATE INDEX link_attempts_who_idx ON link_attempts (platform, external_id, at);

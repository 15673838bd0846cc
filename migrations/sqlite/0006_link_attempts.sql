-- Attempts to redeem a link code, kept to limit guessing across restarts
-- and instances.
CREATE TABLE link_attempts (
    id          INTEGER PRIMARY KEY,
    platform    TEXT NOT NULL,
    external_id TEXT NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX link_attempts_who_idx ON link_attempts (platform, external_id, at);

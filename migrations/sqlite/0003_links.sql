-- One-time codes that join a second platform's identity to an account.
CREATE TABLE link_codes (
    code       TEXT PRIMARY KEY,
    platform   TEXT NOT NULL,
    external_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    used_by    TEXT
);
CREATE INDEX link_codes_owner_idx ON link_codes (platform, external_id, created_at);

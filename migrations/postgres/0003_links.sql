-- One-time codes that join a second platform's identity to an account.
CREATE TABLE link_codes (
    code       text PRIMARY KEY,
    platform   text NOT NULL,
    external_id text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    used_by    text
);
CREATE INDEX link_codes_owner_idx ON link_codes (platform, external_id, created_at);

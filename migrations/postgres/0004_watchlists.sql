-- Named lists of symbols per account, for /scan.
CREATE TABLE watchlists (
    account_id bigint NOT NULL REFERENCES accounts (id),
    name       text   NOT NULL,
    symbols    text   NOT NULL, -- JSON array, normalised symbols
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (account_id, name)
);

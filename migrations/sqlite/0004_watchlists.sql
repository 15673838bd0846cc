-- Named lists of symbols per account, for /scan.
CREATE TABLE watchlists (
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    name       TEXT    NOT NULL,
    symbols    TEXT    NOT NULL, -- JSON array, normalised symbols
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
);

-- Accounts, identities, the two buckets, holds and the append-only ledger.
-- Times are INTEGER microseconds since the Unix epoch, UTC.
CREATE TABLE accounts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at INTEGER NOT NULL
);

CREATE TABLE identities (
    platform    TEXT    NOT NULL,
    external_id TEXT    NOT NULL,
    account_id  INTEGER NOT NULL REFERENCES accounts (id),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (platform, external_id)
);
CREATE INDEX identities_account_idx ON identities (account_id);

CREATE TABLE balances (
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    bucket     TEXT    NOT NULL CHECK (bucket IN ('credit', 'routed')),
    posted     INTEGER NOT NULL DEFAULT 0,
    held       INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, bucket),
    CHECK (posted - held >= 0)
);

CREATE TABLE holds (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  INTEGER NOT NULL,
    bucket      TEXT    NOT NULL,
    amount      INTEGER NOT NULL CHECK (amount > 0),
    captured    INTEGER NOT NULL DEFAULT 0 CHECK (captured >= 0 AND captured <= amount),
    status      TEXT    NOT NULL CHECK (status IN ('open', 'captured', 'released', 'expired')),
    reference   TEXT    NOT NULL,
    idem_key    TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    resolved_at INTEGER,
    FOREIGN KEY (account_id, bucket) REFERENCES balances (account_id, bucket)
);
CREATE INDEX holds_open_expiry_idx ON holds (expires_at) WHERE status = 'open';

CREATE TABLE ledger_entries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id   INTEGER NOT NULL,
    bucket       TEXT    NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('grant', 'topup', 'hold', 'capture', 'release', 'refund', 'adjustment')),
    amount       INTEGER NOT NULL,
    posted_delta INTEGER NOT NULL,
    held_delta   INTEGER NOT NULL,
    hold_id      INTEGER REFERENCES holds (id),
    reference    TEXT    NOT NULL,
    idem_key     TEXT    NOT NULL UNIQUE,
    actor        TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    FOREIGN KEY (account_id, bucket) REFERENCES balances (account_id, bucket)
);
CREATE INDEX ledger_entries_account_idx ON ledger_entries (account_id, id DESC);
CREATE INDEX ledger_entries_hold_idx ON ledger_entries (hold_id) WHERE hold_id IS NOT NULL;

-- The ledger is append-only: updates and deletes are refused by the database itself.
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger_entries is append-only');
END;
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger_entries is append-only');
END;

CREATE TABLE idempotency_keys (
    idem_key    TEXT PRIMARY KEY,
    fingerprint TEXT    NOT NULL,
    result_id   INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);

CREATE TABLE receipts (
    public_id         TEXT PRIMARY KEY,
    run_id            TEXT    NOT NULL,
    account_id        INTEGER NOT NULL REFERENCES accounts (id),
    hold_id           INTEGER,
    model             TEXT    NOT NULL,
    route             TEXT    NOT NULL,
    route_kind        TEXT    NOT NULL,
    bucket            TEXT    NOT NULL,
    tokens_in         INTEGER NOT NULL DEFAULT 0,
    tokens_out        INTEGER NOT NULL DEFAULT 0,
    tokens_in_source  TEXT    NOT NULL,
    tokens_out_source TEXT    NOT NULL,
    held              INTEGER NOT NULL DEFAULT 0,
    captured          INTEGER NOT NULL DEFAULT 0,
    released          INTEGER NOT NULL DEFAULT 0,
    status            TEXT    NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    notes             TEXT    NOT NULL DEFAULT '',
    started_at        INTEGER,
    finished_at       INTEGER,
    created_at        INTEGER NOT NULL
);
CREATE INDEX receipts_run_idx ON receipts (run_id);

CREATE TABLE failed_requests (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT    NOT NULL,
    account_id  INTEGER NOT NULL REFERENCES accounts (id),
    route       TEXT    NOT NULL,
    bucket      TEXT    NOT NULL,
    http_status INTEGER NOT NULL DEFAULT 0,
    error_class TEXT    NOT NULL,
    charged     INTEGER NOT NULL DEFAULT 0,
    detail      TEXT    NOT NULL DEFAULT '',
    occurred_at INTEGER NOT NULL
);
CREATE INDEX failed_requests_run_idx ON failed_requests (run_id, id);

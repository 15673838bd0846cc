-- Money in from chat: provider payments and the offers behind them, debt left
-- by refunds of spent money, and the spend limits users set.
ALTER TABLE balances ADD COLUMN debt INTEGER NOT NULL DEFAULT 0 CHECK (debt >= 0);
ALTER TABLE ledger_entries ADD COLUMN debt_delta INTEGER NOT NULL DEFAULT 0;

-- Times are INTEGER microseconds since the Unix epoch, UTC.
-- A top-up a user asked for: the invoice or checkout session carries its nonce.
CREATE TABLE payment_offers (
    nonce      TEXT PRIMARY KEY,
    provider   TEXT   NOT NULL,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    payer      TEXT   NOT NULL,
    bucket     TEXT   NOT NULL CHECK (bucket IN ('credit', 'routed')),
    amount     INTEGER NOT NULL CHECK (amount > 0),
    chat       TEXT   NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    paid_by    TEXT   NOT NULL DEFAULT ''
);

-- One row per provider charge, credited exactly once (the unique key).
CREATE TABLE payments (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    provider     TEXT   NOT NULL,
    charge_id    TEXT   NOT NULL,
    external_ref TEXT   NOT NULL DEFAULT '',
    offer_nonce  TEXT   NOT NULL DEFAULT '',
    account_id   INTEGER NOT NULL REFERENCES accounts (id),
    bucket       TEXT   NOT NULL,
    amount       INTEGER NOT NULL CHECK (amount > 0),
    refunded     INTEGER NOT NULL DEFAULT 0 CHECK (refunded >= 0 AND refunded <= amount),
    entry_id     INTEGER NOT NULL REFERENCES ledger_entries (id),
    fingerprint  TEXT   NOT NULL,
    actor        TEXT   NOT NULL,
    created_at   INTEGER NOT NULL,
    refunded_at  INTEGER,
    UNIQUE (provider, charge_id)
);
CREATE INDEX payments_external_ref_idx ON payments (provider, external_ref);

CREATE TABLE spend_limits (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id),
    daily      INTEGER NOT NULL DEFAULT 0 CHECK (daily >= 0),
    monthly    INTEGER NOT NULL DEFAULT 0 CHECK (monthly >= 0),
    actor      TEXT   NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Spend in a period is read from an account's holds of that period.
CREATE INDEX holds_account_created_idx ON holds (account_id, created_at);

-- Money in from chat: provider payments and the offers behind them, debt left
-- by refunds of spent money, and the spend limits users set.
ALTER TABLE balances ADD COLUMN debt bigint NOT NULL DEFAULT 0 CHECK (debt >= 0);
ALTER TABLE ledger_entries ADD COLUMN debt_delta bigint NOT NULL DEFAULT 0;

-- A top-up a user asked for: the invoice or checkout session carries its nonce.
CREATE TABLE payment_offers (
    nonce      text PRIMARY KEY,
    provider   text   NOT NULL,
    account_id bigint NOT NULL REFERENCES accounts (id),
    payer      text   NOT NULL,
    bucket     text   NOT NULL CHECK (bucket IN ('credit', 'routed')),
    amount     bigint NOT NULL CHECK (amount > 0),
    chat       text   NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    paid_by    text   NOT NULL DEFAULT ''
);

-- One row per provider charge, credited exactly once (the unique key).
CREATE TABLE payments (
    id           bigserial PRIMARY KEY,
    provider     text   NOT NULL,
    charge_id    text   NOT NULL,
    external_ref text   NOT NULL DEFAULT '',
    offer_nonce  text   NOT NULL DEFAULT '',
    account_id   bigint NOT NULL REFERENCES accounts (id),
    bucket       text   NOT NULL,
    amount       bigint NOT NULL CHECK (amount > 0),
    refunded     bigint NOT NULL DEFAULT 0 CHECK (refunded >= 0 AND refunded <= amount),
    entry_id     bigint NOT NULL REFERENCES ledger_entries (id),
    fingerprint  text   NOT NULL,
    actor        text   NOT NULL,
    created_at   timestamptz NOT NULL,
    refunded_at  timestamptz,
    UNIQUE (provider, charge_id)
);
CREATE INDEX payments_external_ref_idx ON payments (provider, external_ref);

CREATE TABLE spend_limits (
    account_id bigint PRIMARY KEY REFERENCES accounts (id),
    daily      bigint NOT NULL DEFAULT 0 CHECK (daily >= 0),
    monthly    bigint NOT NULL DEFAULT 0 CHECK (monthly >= 0),
    actor      text   NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Spend in a period is read from an account's holds of that period.
CREATE INDEX holds_account_created_idx ON holds (account_id, created_at);

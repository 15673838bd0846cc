-- Accounts, identities, the two buckets, holds and the append-only ledger.
CREATE TABLE accounts (
    id         bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL
);

CREATE TABLE identities (
    platform    text   NOT NULL,
    external_id text   NOT NULL,
    account_id  bigint NOT NULL REFERENCES accounts (id),
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (platform, external_id)
);
CREATE INDEX identities_account_idx ON identities (account_id);

-- One row per account and bucket; the only rows that are ever updated in place.
CREATE TABLE balances (
    account_id bigint NOT NULL REFERENCES accounts (id),
    bucket     text   NOT NULL CHECK (bucket IN ('credit', 'routed')),
    posted     bigint NOT NULL DEFAULT 0,
    held       bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (account_id, bucket),
    CHECK (posted - held >= 0)
);

CREATE TABLE holds (
    id          bigserial PRIMARY KEY,
    account_id  bigint NOT NULL,
    bucket      text   NOT NULL,
    amount      bigint NOT NULL CHECK (amount > 0),
    captured    bigint NOT NULL DEFAULT 0 CHECK (captured >= 0 AND captured <= amount),
    status      text   NOT NULL CHECK (status IN ('open', 'captured', 'released', 'expired')),
    reference   text   NOT NULL,
    idem_key    text   NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    resolved_at timestamptz,
    FOREIGN KEY (account_id, bucket) REFERENCES balances (account_id, bucket)
);
CREATE INDEX holds_open_expiry_idx ON holds (expires_at) WHERE status = 'open';

CREATE TABLE ledger_entries (
    id           bigserial PRIMARY KEY,
    account_id   bigint NOT NULL,
    bucket       text   NOT NULL,
    kind         text   NOT NULL CHECK (kind IN ('grant', 'topup', 'hold', 'capture', 'release', 'refund', 'adjustment')),
    amount       bigint NOT NULL,
    posted_delta bigint NOT NULL,
    held_delta   bigint NOT NULL,
    hold_id      bigint REFERENCES holds (id),
    reference    text   NOT NULL,
    idem_key     text   NOT NULL UNIQUE,
    actor        text   NOT NULL,
    created_at   timestamptz NOT NULL,
    FOREIGN KEY (account_id, bucket) REFERENCES balances (account_id, bucket)
);
CREATE INDEX ledger_entries_account_idx ON ledger_entries (account_id, id DESC);
CREATE INDEX ledger_entries_hold_idx ON ledger_entries (hold_id) WHERE hold_id IS NOT NULL;

-- The ledger is append-only: updates and deletes are refused by the database itself.
CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only';
END;
$$;
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();

-- Every money operation's key, the payload it was first used with and its result.
CREATE TABLE idempotency_keys (
    idem_key    text PRIMARY KEY,
    fingerprint text NOT NULL,
    result_id   bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL
);

CREATE TABLE receipts (
    public_id         text PRIMARY KEY,
    run_id            text   NOT NULL,
    account_id        bigint NOT NULL REFERENCES accounts (id),
    hold_id           bigint,
    model             text   NOT NULL,
    route             text   NOT NULL,
    route_kind        text   NOT NULL,
    bucket            text   NOT NULL,
    tokens_in         bigint NOT NULL DEFAULT 0,
    tokens_out        bigint NOT NULL DEFAULT 0,
    tokens_in_source  text   NOT NULL,
    tokens_out_source text   NOT NULL,
    held              bigint NOT NULL DEFAULT 0,
    captured          bigint NOT NULL DEFAULT 0,
    released          bigint NOT NULL DEFAULT 0,
    status            text   NOT NULL,
    attempts          integer NOT NULL DEFAULT 0,
    notes             text   NOT NULL DEFAULT '',
    started_at        timestamptz,
    finished_at       timestamptz,
    created_at        timestamptz NOT NULL
);
CREATE INDEX receipts_run_idx ON receipts (run_id);

CREATE TABLE failed_requests (
    id          bigserial PRIMARY KEY,
    run_id      text   NOT NULL,
    account_id  bigint NOT NULL REFERENCES accounts (id),
    route       text   NOT NULL,
    bucket      text   NOT NULL,
    http_status integer NOT NULL DEFAULT 0,
    error_class text   NOT NULL,
    charged     bigint NOT NULL DEFAULT 0,
    detail      text   NOT NULL DEFAULT '',
    occurred_at timestamptz NOT NULL
);
CREATE INDEX failed_requests_run_idx ON failed_requests (run_id, id);

-- Chat budgets every instance shares (issue 16): two instances posting to one
-- Telegram group, or one Discord channel, stay together within the platform's
-- limits. A token bucket is one row (its theoretical arrival time: when it is
-- full again); a sliding window is its row (the lock its calls take) and its
-- calls of the last window.
CREATE TABLE rate_cells (
    key text PRIMARY KEY,
    tat timestamptz NOT NULL
);
CREATE TABLE rate_calls (
    key text NOT NULL,
    at  timestamptz NOT NULL
);
CREATE INDEX rate_calls_key_idx ON rate_calls (key, at);

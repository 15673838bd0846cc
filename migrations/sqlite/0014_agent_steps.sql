-- Agent runs: a receipt lists every step (tool or model call, tokens, cost,
-- time) as a JSON array; an observation counts an agent run's model calls,
-- so a quote can say how many steps runs like it took.
ALTER TABLE receipts ADD COLUMN steps TEXT NOT NULL DEFAULT '';
ALTER TABLE quote_observations ADD COLUMN steps INTEGER NOT NULL DEFAULT 0;

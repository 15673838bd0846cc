-- What a receipt paid for, in words: the kind of run, its symbols (or
-- watchlist), its depth, and the schedule that started it, if any.
ALTER TABLE receipts ADD COLUMN purchase TEXT NOT NULL DEFAULT '';

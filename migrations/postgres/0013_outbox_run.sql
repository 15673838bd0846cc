-- A run's final is kept once: the outbox looks a run's final up by its id.
CREATE INDEX outbox_run_idx ON outbox (run_id) WHERE run_id <> '';

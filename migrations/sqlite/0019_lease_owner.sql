-- The watcher of a process with a queue of its own renews, every few
-- seconds, every lease it holds on a live run (the runs it queued but has not
-- started, too): found by owner.
CREATE INDEX runs_lease_owner_idx ON runs (lease_owner) WHERE lease_owner IS NOT NULL;

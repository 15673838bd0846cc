-- Route limits (issue 16) need no table on SQLite: its one process is every
-- caller of its routes, so the line is kept in memory
-- (research.MemoryRouteQueue). The number is kept so both dialects count
-- the same migrations.
SELECT 1;

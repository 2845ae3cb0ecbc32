-- The tables these functions manage: every range-partitioned table of this schema (the event
-- tables and the rollups), so that a new one needs no new copy of them.
CREATE OR REPLACE VIEW dockping_partitioned AS
SELECT c.oid, c.relname
FROM pg_partitioned_table p
JOIN pg_class c ON c.oid = p.partrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE p.partstrat = 'r' AND n.nspname = current_schema();

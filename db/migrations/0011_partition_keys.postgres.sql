-- probe_events: a key of its own on each partition instead of one on the table, so that a
-- partition whose time is over can trade its unique index for a far smaller one
-- (db/compaction.py).
--
-- Both indexes lead with (target_id, dockping_bucket(time)). The unique one of a partition
-- still written is (target_id, dockping_bucket(time), time): an event's identity, in time
-- order. A compacted partition keeps (target_id, dockping_bucket(time)), whose equal keys
-- PostgreSQL stores once with a list of row pointers: about 7 bytes an event instead of 30
-- to 40.
-- A reader of a target's events over a time range bounds the bucket as well as the time
-- (dockping_bucket(time) BETWEEN dockping_bucket(lo) AND dockping_bucket(hi)); one that pages
-- through them orders by (dockping_bucket(time), time), as dockping_target_events() does.

ALTER TABLE probe_events DROP CONSTRAINT probe_events_pkey;

DO $$
DECLARE
    part text;
BEGIN
    FOR part IN
        SELECT child.relname
        FROM pg_inherits
        JOIN pg_class child ON child.oid = pg_inherits.inhrelid
        WHERE pg_inherits.inhparent = 'probe_events'::regclass
    LOOP
        EXECUTE format('CREATE UNIQUE INDEX %I ON %I (target_id, dockping_bucket(time), time)',
                       part || '_key', part);
        -- Compacted the old way (a packed copy of the unique index): compacted again.
        EXECUTE format('COMMENT ON TABLE %I IS NULL', part);
    END LOOP;
END $$;

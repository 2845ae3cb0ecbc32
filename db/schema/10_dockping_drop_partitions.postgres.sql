-- Drop every partition whose whole range ends at or before cutoff.
CREATE OR REPLACE FUNCTION dockping_drop_partitions(cutoff timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    rec record;
    dropped integer := 0;
BEGIN
    FOR rec IN
        SELECT child.relname AS part,
               (regexp_match(pg_get_expr(child.relpartbound, child.oid),
                             'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper_bound
        FROM pg_inherits
        JOIN dockping_partitioned parent ON parent.oid = pg_inherits.inhparent
        JOIN pg_class child ON child.oid = pg_inherits.inhrelid
    LOOP
        IF rec.upper_bound <= cutoff THEN
            EXECUTE format('DROP TABLE %I', rec.part);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END $$;

-- Make the partitions of every range-partitioned table (dockping_partitioned) from start_at
-- to end_at, step wide, aligned on the epoch; a new probe_events partition gets its unique
-- index (target_id, dockping_bucket(time), time). Returns how many it made.
CREATE OR REPLACE FUNCTION dockping_ensure_partitions(start_at timestamptz, end_at timestamptz,
                                                      step interval)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    tbl text;
    lower_bound timestamptz;
    part text;
    made integer := 0;
BEGIN
    -- Partition bounds are aligned to the step, counted from the epoch in UTC.
    lower_bound := to_timestamp(floor(extract(epoch FROM start_at) / extract(epoch FROM step))
                                * extract(epoch FROM step));
    WHILE lower_bound < end_at LOOP
        -- In creation order, probe_events first, as a batch writes them: a batch that holds
        -- probe_events then makes this wait before it holds any other lock (no deadlock).
        FOR tbl IN SELECT relname FROM dockping_partitioned ORDER BY oid LOOP
            part := format('%s_p%s', tbl, to_char(lower_bound AT TIME ZONE 'UTC', 'YYYYMMDD"t"HH24MI'));
            IF to_regclass(part) IS NULL THEN
                EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                               part, tbl, lower_bound, lower_bound + step);
                IF tbl = 'probe_events' THEN
                    EXECUTE format('CREATE UNIQUE INDEX %I ON %I (target_id, dockping_bucket(time), time)',
                                   part || '_key', part);
                END IF;
                made := made + 1;
            END IF;
        END LOOP;
        lower_bound := lower_bound + step;
    END LOOP;
    RETURN made;
END $$;

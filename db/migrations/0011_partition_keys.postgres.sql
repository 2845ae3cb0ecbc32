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

-- The ten-minute bucket of an event's time: how many whole ten minutes after the epoch it
-- is. An integer: in an index entry it fills the 4 bytes that would pad target_id before a
-- timestamp, so the unique index costs no more than (target_id, time) did. Computed in
-- float8 (about 0.1 µs, against 0.25 in numeric): rounding may move a time a microsecond
-- from a bucket's bound across it, but it never breaks the order, which is all that readers
-- rely on (a later time is never in an earlier bucket).
CREATE FUNCTION dockping_bucket(t timestamptz) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN floor(date_part('epoch', t - timestamptz '1970-01-01 00:00:00+00') / 600)::integer;

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

-- As in 0002, and a new probe_events partition gets its unique index.
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

-- As in 0005, with the events' buckets bounded too, so that the scan for given targets is a
-- range of either index.
CREATE OR REPLACE FUNCTION dockping_rollup_of(lo timestamptz, hi timestamptz, width interval)
RETURNS TABLE (bucket timestamptz, target_id integer, probes integer, failures integer,
               sum_us bigint, max_us integer, p50_us integer, p95_us integer)
LANGUAGE sql STABLE AS $$
    SELECT date_bin(width, e.time, timestamptz 'epoch'),
           e.target_id,
           count(*)::integer,
           (count(*) FILTER (WHERE e.latency_us < 0))::integer,
           coalesce(sum(e.latency_us) FILTER (WHERE e.latency_us >= 0), 0)::bigint,
           max(e.latency_us) FILTER (WHERE e.latency_us >= 0),
           percentile_disc(0.5) WITHIN GROUP (ORDER BY e.latency_us)
               FILTER (WHERE e.latency_us >= 0),
           percentile_disc(0.95) WITHIN GROUP (ORDER BY e.latency_us)
               FILTER (WHERE e.latency_us >= 0)
    FROM probe_events e
    WHERE e.time >= lo AND e.time < hi
      AND dockping_bucket(e.time) BETWEEN dockping_bucket(lo) AND dockping_bucket(hi)
    GROUP BY 1, 2
$$;

-- A target's probe events older than `before` (all when null), newest first: the events page.
-- Ordered by bucket, then time, which both indexes give (the order is the same).
CREATE FUNCTION dockping_target_events(target integer, before timestamptz, page integer)
RETURNS TABLE ("time" timestamptz, latency_us integer)
LANGUAGE sql STABLE AS $$
    SELECT e.time, e.latency_us
    FROM probe_events e
    WHERE e.target_id = target
      AND (before IS NULL
           OR (e.time < before AND dockping_bucket(e.time) <= dockping_bucket(before)))
    ORDER BY dockping_bucket(e.time) DESC, e.time DESC
    LIMIT page
$$;

-- The per-target, per-minute latency rollup (plain PostgreSQL): an ordinary table,
-- range-partitioned like the events, kept up to date by ingest in the batch's own
-- transaction and refolded from probe_events by `dockping rebuild`.

-- One row per target and minute. Percentiles need a form that merges exactly when a
-- late or second batch adds to a minute, so the minute keeps its successful latencies
-- (4 bytes a probe; a few to a few dozen a minute), sorted: a merge sorts the union, and
-- reading a percentile is one subscript.
CREATE TABLE probe_minute (
    bucket      timestamptz NOT NULL,
    target_id   integer NOT NULL,
    probes      integer NOT NULL,
    failures    integer NOT NULL,
    sum_us      bigint NOT NULL,   -- sum of the successful latencies
    max_us      integer,           -- null when no probe of the minute succeeded
    latencies   integer[] NOT NULL,
    PRIMARY KEY (target_id, bucket)
) PARTITION BY RANGE (bucket);

-- Partitions for every event table and the rollup, aligned to the step from the epoch.
CREATE OR REPLACE FUNCTION dockping_ensure_partitions(start_at timestamptz, end_at timestamptz, step interval)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    tbl text;
    lower_bound timestamptz;
    part text;
    made integer := 0;
BEGIN
    lower_bound := to_timestamp(floor(extract(epoch FROM start_at) / extract(epoch FROM step))
                                * extract(epoch FROM step));
    WHILE lower_bound < end_at LOOP
        FOREACH tbl IN ARRAY ARRAY['probe_events', 'container_events', 'heartbeats', 'probe_minute'] LOOP
            part := format('%s_p%s', tbl, to_char(lower_bound AT TIME ZONE 'UTC', 'YYYYMMDD"t"HH24MI'));
            IF to_regclass(part) IS NULL THEN
                EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                               part, tbl, lower_bound, lower_bound + step);
                made := made + 1;
            END IF;
        END LOOP;
        lower_bound := lower_bound + step;
    END LOOP;
    RETURN made;
END $$;

-- Drop every partition (events and rollup) whose whole range ends at or before cutoff.
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
        JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
        JOIN pg_class child ON child.oid = pg_inherits.inhrelid
        WHERE parent.relname IN ('probe_events', 'container_events', 'heartbeats', 'probe_minute')
    LOOP
        IF rec.upper_bound <= cutoff THEN
            EXECUTE format('DROP TABLE %I', rec.part);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END $$;

-- Storage settings: partitions are made by ingest per partition_interval, and expired
-- by dockping_drop_partitions(); compression exists only on TimescaleDB.
CREATE FUNCTION dockping_configure_storage(partition_interval interval, compress_after interval,
                                           retention interval)
RETURNS void LANGUAGE sql AS $$ SELECT $$;

-- Per-target latency per minute: the same view on both backends.
CREATE VIEW latency_minute AS
SELECT target_id,
       bucket,
       probes::bigint AS probes,
       failures::bigint AS failures,
       CASE WHEN probes > failures
            THEN sum_us::double precision / (probes - failures) / 1000 END AS avg_ms,
       -- percentile_disc of the sorted latencies: the value at position ceil(q * n).
       latencies[greatest(ceil(0.5::double precision * cardinality(latencies)), 1)::integer]
           ::double precision / 1000 AS p50_ms,
       latencies[greatest(ceil(0.95::double precision * cardinality(latencies)), 1)::integer]
           ::double precision / 1000 AS p95_ms,
       max_us::double precision / 1000 AS max_ms
FROM probe_minute;

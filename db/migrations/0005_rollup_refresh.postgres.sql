-- Rollups refreshed from the events (plain PostgreSQL), as TimescaleDB refreshes its
-- continuous aggregates: a batch no longer merges itself into probe_minute (an upsert per
-- target and minute, a third of a batch's database work); it only logs the minutes it
-- touched.
-- dockping_refresh_rollups() recomputes logged minutes, once they have ended, from the
-- events, and then the hours they lie in. The views read the stored rollup for settled
-- buckets and compute the logged (pending) ones from the events, so a read is always exact.

-- Minutes that received events since their rollup was last computed: one row per batch and
-- minute, appended by ingest in the batch's transaction; consumed by the refresher.
CREATE TABLE rollup_log (bucket timestamptz NOT NULL);

-- Hours whose minutes were refreshed since the hour itself was last computed.
CREATE TABLE rollup_hour_log (bucket timestamptz NOT NULL);

-- The minute keeps its exact percentiles (computed from the events once) instead of every
-- latency: 8 bytes a minute instead of 4 bytes a probe, and a read is a plain index scan.
ALTER TABLE probe_minute ADD COLUMN p50_us integer, ADD COLUMN p95_us integer;

UPDATE probe_minute
SET p50_us = latencies[greatest(ceil(0.5::double precision * cardinality(latencies)), 1)::integer],
    p95_us = latencies[greatest(ceil(0.95::double precision * cardinality(latencies)), 1)::integer];

-- The same rollup per hour, with exact hourly percentiles (computed from the events).
CREATE TABLE probe_hour (
    bucket      timestamptz NOT NULL,
    target_id   integer NOT NULL,
    probes      integer NOT NULL,
    failures    integer NOT NULL,
    sum_us      bigint NOT NULL,   -- sum of the successful latencies
    max_us      integer,           -- null when no probe of the hour succeeded
    p50_us      integer,
    p95_us      integer,
    PRIMARY KEY (target_id, bucket)
) PARTITION BY RANGE (bucket);

-- probe_hour gets the partitions probe_minute has; dockping_ensure_partitions() makes the
-- next ones of both (every range-partitioned table of the schema).
DO $$
DECLARE
    part record;
BEGIN
    FOR part IN
        SELECT child.relname, pg_get_expr(child.relpartbound, child.oid) AS bound
        FROM pg_inherits
        JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
        JOIN pg_class child ON child.oid = pg_inherits.inhrelid
        WHERE parent.relname = 'probe_minute'
    LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF probe_hour %s',
                       replace(part.relname, 'probe_minute', 'probe_hour'), part.bound);
    END LOOP;
END $$;

-- Every hour already rolled up by minute is computed at the first refresh.
INSERT INTO rollup_hour_log (bucket)
SELECT DISTINCT date_bin(interval '1 hour', bucket, timestamptz 'epoch')
FROM probe_minute;

-- The refresher finds a minute's events of every target by time: a BRIN index costs a few
-- kilobytes a partition and next to nothing per insert, as events arrive in time order.
CREATE INDEX probe_events_time_brin ON probe_events USING brin (time)
    WITH (pages_per_range = 16, autosummarize = on);

-- latency_minute is made anew below, over the stored percentiles.
DROP VIEW IF EXISTS latency_minute;
ALTER TABLE probe_minute DROP COLUMN latencies;

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
DROP VIEW latency_minute;
ALTER TABLE probe_minute DROP COLUMN latencies;

-- The rollup rows of the events in [lo, hi), per target and bucket of a width: what the
-- refresher stores and what the views compute for pending buckets. A plain SQL function, so
-- that the planner inlines it and pushes a caller's target filter into the scan.
CREATE FUNCTION dockping_rollup_of(lo timestamptz, hi timestamptz, width interval)
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
    GROUP BY 1, 2
$$;

-- Buckets whose stored rollup is not current, with their width.
CREATE VIEW rollup_pending AS
SELECT DISTINCT bucket, interval '1 minute' AS width FROM rollup_log
UNION ALL
SELECT bucket, interval '1 hour' FROM (
    SELECT date_bin(interval '1 hour', bucket, timestamptz 'epoch') AS bucket FROM rollup_log
    UNION
    SELECT bucket FROM rollup_hour_log
) hours;

-- Every rollup as it stands: the stored rows of settled buckets and, for pending ones, rows
-- computed from the events (like TimescaleDB's real-time aggregation), in readable units.
CREATE VIEW latency_rollups AS
SELECT width,
       target_id,
       bucket,
       probes::bigint AS probes,
       failures::bigint AS failures,
       CASE WHEN probes > failures
            THEN sum_us::double precision / (probes - failures) / 1000 END AS avg_ms,
       p50_us::double precision / 1000 AS p50_ms,
       p95_us::double precision / 1000 AS p95_ms,
       max_us::double precision / 1000 AS max_ms
FROM (
    SELECT interval '1 minute' AS width, bucket, target_id, probes, failures, sum_us, max_us,
           p50_us, p95_us
    FROM probe_minute
    WHERE bucket NOT IN (SELECT bucket FROM rollup_pending WHERE width = interval '1 minute')
    UNION ALL
    SELECT interval '1 hour', bucket, target_id, probes, failures, sum_us, max_us, p50_us,
           p95_us
    FROM probe_hour
    WHERE bucket NOT IN (SELECT bucket FROM rollup_pending WHERE width = interval '1 hour')
    UNION ALL
    -- Lateral: each pending bucket is one range scan, of the (target_id, time) index for
    -- the targets asked for, or of the time index for all.
    SELECT p.width, r.*
    FROM rollup_pending p
    CROSS JOIN LATERAL dockping_rollup_of(p.bucket, p.bucket + p.width, p.width) r
) buckets;

-- Per-target latency per minute and per hour: the same views on both backends.
CREATE VIEW latency_minute AS
SELECT target_id, bucket, probes, failures, avg_ms, p50_ms, p95_ms, max_ms
FROM latency_rollups WHERE width = interval '1 minute';

CREATE VIEW latency_hour AS
SELECT target_id, bucket, probes, failures, avg_ms, p50_ms, p95_ms, max_ms
FROM latency_rollups WHERE width = interval '1 hour';

-- Recompute the logged buckets of one rollup that ended before settled_before, from the
-- events; log the hours they lie in for the next level (when there is one); return the rollup
-- rows written. A log row is taken only once committed, with its batch's events, and the
-- statement reads the events as of its own start, so the events of every taken row are
-- counted. A batch still open when its bucket is refreshed leaves its row for the next refresh.
CREATE FUNCTION dockping_refresh_rollup(log_table text, rollup_table text, width interval,
                                        next_log text, settled_before timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    written integer;
BEGIN
    EXECUTE format($sql$
        WITH taken AS (
            DELETE FROM %1$I WHERE bucket + $1 <= $2 RETURNING bucket
        ), islands AS (  -- runs of consecutive buckets, each read with one range scan
            SELECT min(bucket) AS lo, max(bucket) + $1 AS hi
            FROM (SELECT bucket, bucket - $1 * row_number() OVER (ORDER BY bucket) AS run
                  FROM (SELECT DISTINCT bucket FROM taken) b) r
            GROUP BY run
        ), logged AS (
            INSERT INTO %3$s (bucket)
            SELECT DISTINCT date_bin(interval '1 hour', bucket, timestamptz 'epoch')
            FROM taken WHERE %4$L
        )
        INSERT INTO %2$I (bucket, target_id, probes, failures, sum_us, max_us, p50_us, p95_us)
        SELECT r.* FROM islands i CROSS JOIN LATERAL dockping_rollup_of(i.lo, i.hi, $1) r
        ORDER BY r.target_id, r.bucket
        ON CONFLICT (target_id, bucket) DO UPDATE SET
            probes = EXCLUDED.probes, failures = EXCLUDED.failures, sum_us = EXCLUDED.sum_us,
            max_us = EXCLUDED.max_us, p50_us = EXCLUDED.p50_us, p95_us = EXCLUDED.p95_us
        $sql$, log_table, rollup_table, coalesce(quote_ident(next_log), log_table),
        next_log IS NOT NULL)
    USING width, settled_before;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$;

-- Refresh the minutes, then the hours, that ended before settled_before; return the rollup
-- rows written. Ingest runs it every database.rollup_interval; `dockping rebuild` and
-- anyone with psql may run it too.
CREATE FUNCTION dockping_refresh_rollups(settled_before timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    -- One refresher at a time; several ingest processes may each run one.
    PERFORM pg_advisory_xact_lock(7003);
    RETURN dockping_refresh_rollup('rollup_log', 'probe_minute', interval '1 minute',
                                   'rollup_hour_log', settled_before)
         + dockping_refresh_rollup('rollup_hour_log', 'probe_hour', interval '1 hour',
                                   NULL, settled_before);
END $$;

-- Recompute the logged buckets of one rollup that ended before settled_before, from the
-- events; log the hours they lie in for the next level (when there is one); return the rollup
-- rows written. A log row is taken only once committed, with its batch's events, and the
-- statement reads the events as of its own start, so the events of every taken row are
-- counted. A batch still open when its bucket is refreshed leaves its row for the next refresh.
CREATE OR REPLACE FUNCTION dockping_refresh_rollup(log_table text, rollup_table text, width interval,
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

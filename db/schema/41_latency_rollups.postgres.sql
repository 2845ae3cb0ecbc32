-- Every rollup as it stands: the stored rows of settled buckets and, for pending ones, rows
-- computed from the events (like TimescaleDB's real-time aggregation), in readable units.
CREATE OR REPLACE VIEW latency_rollups AS
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

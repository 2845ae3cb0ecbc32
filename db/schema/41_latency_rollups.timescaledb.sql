-- Both rollups in readable units, as on plain PostgreSQL; latency_minute and latency_hour
-- are its two widths, the same views on both backends.
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
    UNION ALL
    SELECT interval '1 hour', bucket, target_id, probes, failures, sum_us, max_us, p50_us,
           p95_us
    FROM probe_hour
) buckets;

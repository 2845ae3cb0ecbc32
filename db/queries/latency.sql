-- latency_minute_points --
-- Latency points at 1 min, latency_minute's own width: its rows as they are, with their
-- exact percentiles.
SELECT m.bucket AS time, m.probes, m.failures, m.avg_ms::float8 AS avg_ms,
       m.p50_ms::float8 AS p50_ms, m.p95_ms::float8 AS p95_ms, m.max_ms::float8 AS max_ms
FROM latency_minute m
WHERE m.target_id = %(target_id)s AND m.bucket >= %(start)s AND m.bucket < %(end)s
ORDER BY m.bucket

-- latency_hour_points --
-- Latency points at 1 h, latency_hour's own width: its rows as they are, with their exact
-- percentiles.
SELECT m.bucket AS time, m.probes, m.failures, m.avg_ms::float8 AS avg_ms,
       m.p50_ms::float8 AS p50_ms, m.p95_ms::float8 AS p95_ms, m.max_ms::float8 AS max_ms
FROM latency_hour m
WHERE m.target_id = %(target_id)s AND m.bucket >= %(start)s AND m.bucket < %(end)s
ORDER BY m.bucket

-- latency_minute_buckets --
-- Latency points in buckets of whole minutes wider than one, re-aggregated from
-- latency_minute. probes and failures add up, avg_ms is weighted by successful probes and
-- max_ms is the largest max: all exact. Percentiles cannot be merged, so p50_ms is the median
-- of the rollup's averages and p95_ms the 95th percentile of its maxima (it leans high: a
-- cautious estimate).
SELECT date_bin(%(bucket)s::interval, m.bucket, timestamptz '1970-01-01 00:00:00+00') AS time,
       sum(m.probes)::bigint AS probes,
       sum(m.failures)::bigint AS failures,
       (sum(m.avg_ms * (m.probes - m.failures))
        / nullif(sum(m.probes - m.failures) FILTER (WHERE m.avg_ms IS NOT NULL), 0))::float8 AS avg_ms,
       (percentile_cont(0.5) WITHIN GROUP (ORDER BY m.avg_ms))::float8 AS p50_ms,
       (percentile_cont(0.95) WITHIN GROUP (ORDER BY m.max_ms))::float8 AS p95_ms,
       max(m.max_ms)::float8 AS max_ms
FROM latency_minute m
WHERE m.target_id = %(target_id)s AND m.bucket >= %(start)s AND m.bucket < %(end)s
GROUP BY 1
ORDER BY 1

-- latency_hour_buckets --
-- Latency points in buckets of whole hours wider than one, re-aggregated from latency_hour
-- as latency_minute_buckets does from latency_minute (the same exact sums, the same
-- estimated percentiles).
SELECT date_bin(%(bucket)s::interval, m.bucket, timestamptz '1970-01-01 00:00:00+00') AS time,
       sum(m.probes)::bigint AS probes,
       sum(m.failures)::bigint AS failures,
       (sum(m.avg_ms * (m.probes - m.failures))
        / nullif(sum(m.probes - m.failures) FILTER (WHERE m.avg_ms IS NOT NULL), 0))::float8 AS avg_ms,
       (percentile_cont(0.5) WITHIN GROUP (ORDER BY m.avg_ms))::float8 AS p50_ms,
       (percentile_cont(0.95) WITHIN GROUP (ORDER BY m.max_ms))::float8 AS p95_ms,
       max(m.max_ms)::float8 AS max_ms
FROM latency_hour m
WHERE m.target_id = %(target_id)s AND m.bucket >= %(start)s AND m.bucket < %(end)s
GROUP BY 1
ORDER BY 1

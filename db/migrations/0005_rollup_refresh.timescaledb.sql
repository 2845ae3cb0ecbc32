-- dockping: no-transaction
-- The per-target, per-hour latency rollup (TimescaleDB): a second continuous aggregate, over
-- the events themselves so that its percentiles are exact, refreshed by a policy, with
-- real-time aggregation for the hours not yet materialised.

CREATE MATERIALIZED VIEW probe_hour
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(interval '1 hour', time) AS bucket,
       target_id,
       count(*) AS probes,
       count(*) FILTER (WHERE latency_us < 0) AS failures,
       coalesce(sum(latency_us) FILTER (WHERE latency_us >= 0), 0) AS sum_us,
       max(latency_us) FILTER (WHERE latency_us >= 0) AS max_us,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_us)
           FILTER (WHERE latency_us >= 0) AS p50_us,
       percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_us)
           FILTER (WHERE latency_us >= 0) AS p95_us
FROM probe_events
GROUP BY 1, 2
WITH NO DATA;

-- statement --

SELECT set_chunk_time_interval('probe_hour', interval '1 day');

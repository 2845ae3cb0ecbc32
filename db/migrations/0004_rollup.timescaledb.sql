-- dockping: no-transaction
-- The per-target, per-minute latency rollup (TimescaleDB): a continuous aggregate,
-- refreshed by a policy, with real-time aggregation for the minutes not yet materialised.
-- A continuous aggregate cannot be created inside a transaction, hence the marker above.

CREATE MATERIALIZED VIEW probe_minute
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(interval '1 minute', time) AS bucket,
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

-- The rollup's chunks span what the events' chunks span, so that retention drops both alike.
SELECT set_chunk_time_interval('probe_minute', interval '1 day');

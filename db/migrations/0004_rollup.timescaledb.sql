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

-- statement --

-- Per-target latency per minute: the same view on both backends.
CREATE VIEW latency_minute AS
SELECT target_id,
       bucket,
       probes::bigint AS probes,
       failures::bigint AS failures,
       CASE WHEN probes > failures
            THEN sum_us::double precision / (probes - failures) / 1000 END AS avg_ms,
       p50_us::double precision / 1000 AS p50_ms,
       p95_us::double precision / 1000 AS p95_ms,
       max_us::double precision / 1000 AS max_ms
FROM probe_minute;

-- statement --

-- Chunk size, compression, retention and the rollup's refresh follow the settings;
-- ingest calls this when it starts. Each policy is replaced, so a changed setting applies.
CREATE FUNCTION dockping_configure_storage(partition_interval interval, compress_after interval,
                                           retention interval)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    tbl text;
BEGIN
    PERFORM set_chunk_time_interval('probe_events', partition_interval);
    PERFORM set_chunk_time_interval('probe_minute', partition_interval);
    FOREACH tbl IN ARRAY ARRAY['probe_events', 'container_events', 'heartbeats'] LOOP
        PERFORM remove_compression_policy(tbl, if_exists => true);
        PERFORM add_compression_policy(tbl, compress_after => compress_after);
        PERFORM remove_retention_policy(tbl, if_exists => true);
        PERFORM add_retention_policy(tbl, drop_after => retention);
    END LOOP;
    PERFORM remove_retention_policy('probe_minute', if_exists => true);
    PERFORM add_retention_policy('probe_minute', drop_after => retention);
    PERFORM remove_continuous_aggregate_policy('probe_minute', if_exists => true);
    -- start_offset NULL: late events of any age are folded in at the next refresh.
    PERFORM add_continuous_aggregate_policy('probe_minute', start_offset => NULL,
                                            end_offset => interval '1 minute',
                                            schedule_interval => interval '1 minute');
END $$;

-- statement --

-- Expire raw chunks and the rollup's chunks together, whole.
CREATE OR REPLACE FUNCTION dockping_drop_partitions(cutoff timestamptz)
RETURNS integer LANGUAGE sql AS $$
    SELECT (SELECT count(*) FROM drop_chunks('probe_events', older_than => cutoff))::integer
         + (SELECT count(*) FROM drop_chunks('container_events', older_than => cutoff))::integer
         + (SELECT count(*) FROM drop_chunks('heartbeats', older_than => cutoff))::integer
         + (SELECT count(*) FROM drop_chunks('probe_minute', older_than => cutoff))::integer
$$;

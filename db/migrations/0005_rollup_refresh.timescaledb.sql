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

-- statement --

-- Both rollups in readable units, as on plain PostgreSQL; latency_minute and latency_hour
-- are its two widths, the same views on both backends.
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
    UNION ALL
    SELECT interval '1 hour', bucket, target_id, probes, failures, sum_us, max_us, p50_us,
           p95_us
    FROM probe_hour
) buckets;

-- statement --

CREATE OR REPLACE VIEW latency_minute AS
SELECT target_id, bucket, probes, failures, avg_ms, p50_ms, p95_ms, max_ms
FROM latency_rollups WHERE width = interval '1 minute';

-- statement --

CREATE VIEW latency_hour AS
SELECT target_id, bucket, probes, failures, avg_ms, p50_ms, p95_ms, max_ms
FROM latency_rollups WHERE width = interval '1 hour';

-- statement --

-- Policies refresh the continuous aggregates here; a refresh cannot run inside a function.
-- The function exists on both backends so that callers need not tell them apart.
CREATE FUNCTION dockping_refresh_rollups(settled_before timestamptz DEFAULT now())
RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;

-- statement --

CREATE OR REPLACE FUNCTION dockping_configure_storage(partition_interval interval,
                                                      compress_after interval,
                                                      retention interval)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    tbl text;
BEGIN
    PERFORM set_chunk_time_interval('probe_events', partition_interval);
    PERFORM set_chunk_time_interval('probe_minute', partition_interval);
    PERFORM set_chunk_time_interval('probe_hour', partition_interval);
    FOREACH tbl IN ARRAY ARRAY['probe_events', 'container_events', 'heartbeats'] LOOP
        PERFORM remove_compression_policy(tbl, if_exists => true);
        PERFORM add_compression_policy(tbl, compress_after => compress_after);
        PERFORM remove_retention_policy(tbl, if_exists => true);
        PERFORM add_retention_policy(tbl, drop_after => retention);
    END LOOP;
    FOREACH tbl IN ARRAY ARRAY['probe_minute', 'probe_hour'] LOOP
        PERFORM remove_retention_policy(tbl, if_exists => true);
        PERFORM add_retention_policy(tbl, drop_after => retention);
        PERFORM remove_continuous_aggregate_policy(tbl, if_exists => true);
    END LOOP;
    -- start_offset NULL: late events of any age are folded in at the next refresh.
    PERFORM add_continuous_aggregate_policy('probe_minute', start_offset => NULL,
                                            end_offset => interval '1 minute',
                                            schedule_interval => interval '1 minute');
    PERFORM add_continuous_aggregate_policy('probe_hour', start_offset => NULL,
                                            end_offset => interval '1 hour',
                                            schedule_interval => interval '10 minutes');
END $$;

-- statement --

-- Expire raw chunks and the rollups' chunks together, whole.
CREATE OR REPLACE FUNCTION dockping_drop_partitions(cutoff timestamptz)
RETURNS integer LANGUAGE sql AS $$
    SELECT (SELECT count(*) FROM drop_chunks('probe_events', older_than => cutoff))::integer
         + (SELECT count(*) FROM drop_chunks('container_events', older_than => cutoff))::integer
         + (SELECT count(*) FROM drop_chunks('heartbeats', older_than => cutoff))::integer
         + (SELECT count(*) FROM drop_chunks('probe_minute', older_than => cutoff))::integer
         + (SELECT count(*) FROM drop_chunks('probe_hour', older_than => cutoff))::integer
$$;

-- The per-target, per-minute latency rollup (plain PostgreSQL): an ordinary table,
-- range-partitioned like the events, kept up to date by ingest in the batch's own
-- transaction and refolded from probe_events by `dockping rebuild`.

-- One row per target and minute. Percentiles need a form that merges exactly when a
-- late or second batch adds to a minute, so the minute keeps its successful latencies
-- (4 bytes a probe; a few to a few dozen a minute), sorted: a merge sorts the union, and
-- reading a percentile is one subscript.
CREATE TABLE probe_minute (
    bucket      timestamptz NOT NULL,
    target_id   integer NOT NULL,
    probes      integer NOT NULL,
    failures    integer NOT NULL,
    sum_us      bigint NOT NULL,   -- sum of the successful latencies
    max_us      integer,           -- null when no probe of the minute succeeded
    latencies   integer[] NOT NULL,
    PRIMARY KEY (target_id, bucket)
) PARTITION BY RANGE (bucket);

-- dockping_ensure_partitions() and dockping_drop_partitions() (0002) manage its partitions
-- like the events', since it is range-partitioned too.

-- Storage settings: partitions are made by ingest per partition_interval, and expired
-- by dockping_drop_partitions(); compression exists only on TimescaleDB.
CREATE FUNCTION dockping_configure_storage(partition_interval interval, compress_after interval,
                                           retention interval)
RETURNS void LANGUAGE sql AS $$ SELECT $$;

-- Per-target latency per minute: the same view on both backends.
CREATE VIEW latency_minute AS
SELECT target_id,
       bucket,
       probes::bigint AS probes,
       failures::bigint AS failures,
       CASE WHEN probes > failures
            THEN sum_us::double precision / (probes - failures) / 1000 END AS avg_ms,
       -- percentile_disc of the sorted latencies: the value at position ceil(q * n).
       latencies[greatest(ceil(0.5::double precision * cardinality(latencies)), 1)::integer]
           ::double precision / 1000 AS p50_ms,
       latencies[greatest(ceil(0.95::double precision * cardinality(latencies)), 1)::integer]
           ::double precision / 1000 AS p95_ms,
       max_us::double precision / 1000 AS max_ms
FROM probe_minute;

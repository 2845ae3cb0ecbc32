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

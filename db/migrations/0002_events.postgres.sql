-- Append-only event tables, range-partitioned by time (plain PostgreSQL).
-- Partitions are made ahead by dockping_ensure_partitions() and expired whole
-- by dockping_drop_partitions(), never by row DELETE.

-- One probe result. latency_us >= 0: it succeeded in that many microseconds;
-- latency_us < 0: it failed with error code -latency_us (see probe_errors).
-- 16 bytes of data per row; the view probe_history gives the readable form.
CREATE TABLE probe_events (
    time        timestamptz NOT NULL,
    target_id   integer NOT NULL,
    latency_us  integer NOT NULL,
    PRIMARY KEY (target_id, time)
) PARTITION BY RANGE (time);

CREATE TABLE container_events (
    time            timestamptz NOT NULL,
    container_key   integer NOT NULL,
    action          text NOT NULL,
    exit_code       integer,
    detail          jsonb,
    PRIMARY KEY (container_key, action, time)
) PARTITION BY RANGE (time);

CREATE TABLE heartbeats (
    time        timestamptz NOT NULL,
    agent_id    integer NOT NULL,
    version     text NOT NULL,
    docker_ok   boolean NOT NULL,
    targets     integer NOT NULL,
    spool_bytes bigint NOT NULL,
    dropped     bigint NOT NULL,
    PRIMARY KEY (agent_id, time)
) PARTITION BY RANGE (time);

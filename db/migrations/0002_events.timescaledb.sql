-- Append-only event tables as TimescaleDB hypertables. The chunk interval, and the
-- compression and retention policies, follow the settings through
-- dockping_configure_storage() (migration 0004), which ingest calls when it starts.

CREATE TABLE probe_events (
    time        timestamptz NOT NULL,
    target_id   integer NOT NULL,
    latency_us  integer NOT NULL,
    PRIMARY KEY (target_id, time)
);
SELECT create_hypertable('probe_events', 'time', chunk_time_interval => interval '1 day');

CREATE TABLE container_events (
    time            timestamptz NOT NULL,
    container_key   integer NOT NULL,
    action          text NOT NULL,
    exit_code       integer,
    detail          jsonb,
    PRIMARY KEY (container_key, action, time)
);
SELECT create_hypertable('container_events', 'time', chunk_time_interval => interval '7 days');

CREATE TABLE heartbeats (
    time        timestamptz NOT NULL,
    agent_id    integer NOT NULL,
    version     text NOT NULL,
    docker_ok   boolean NOT NULL,
    targets     integer NOT NULL,
    spool_bytes bigint NOT NULL,
    dropped     bigint NOT NULL,
    PRIMARY KEY (agent_id, time)
);
SELECT create_hypertable('heartbeats', 'time', chunk_time_interval => interval '7 days');

-- Compressed chunks keep each target's (container's, agent's) events together, in time
-- order: a probe event then costs a few bytes.
ALTER TABLE probe_events SET (timescaledb.compress, timescaledb.compress_segmentby = 'target_id',
                              timescaledb.compress_orderby = 'time');
ALTER TABLE container_events SET (timescaledb.compress,
                                  timescaledb.compress_segmentby = 'container_key',
                                  timescaledb.compress_orderby = 'time, action');
ALTER TABLE heartbeats SET (timescaledb.compress, timescaledb.compress_segmentby = 'agent_id',
                            timescaledb.compress_orderby = 'time');

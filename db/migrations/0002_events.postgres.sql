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

-- The tables these functions manage: every range-partitioned table of this schema (the event
-- tables here, the rollup of 0004), so that a new one needs no new copy of them.
CREATE VIEW dockping_partitioned AS
SELECT c.oid, c.relname
FROM pg_partitioned_table p
JOIN pg_class c ON c.oid = p.partrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE p.partstrat = 'r' AND n.nspname = current_schema();

-- Create the partitions covering [start_at, end_at) for every partitioned table.
CREATE FUNCTION dockping_ensure_partitions(start_at timestamptz, end_at timestamptz, step interval)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    tbl text;
    lower_bound timestamptz;
    part text;
    made integer := 0;
BEGIN
    -- Partition bounds are aligned to the step, counted from the epoch in UTC.
    lower_bound := to_timestamp(floor(extract(epoch FROM start_at) / extract(epoch FROM step))
                                * extract(epoch FROM step));
    WHILE lower_bound < end_at LOOP
        -- In creation order, probe_events first, as a batch writes them: a batch that holds
        -- probe_events then makes this wait before it holds any other lock (no deadlock).
        FOR tbl IN SELECT relname FROM dockping_partitioned ORDER BY oid LOOP
            part := format('%s_p%s', tbl, to_char(lower_bound AT TIME ZONE 'UTC', 'YYYYMMDD"t"HH24MI'));
            IF to_regclass(part) IS NULL THEN
                EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                               part, tbl, lower_bound, lower_bound + step);
                made := made + 1;
            END IF;
        END LOOP;
        lower_bound := lower_bound + step;
    END LOOP;
    RETURN made;
END $$;

-- Drop every partition whose whole range ends at or before cutoff.
CREATE FUNCTION dockping_drop_partitions(cutoff timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    rec record;
    dropped integer := 0;
BEGIN
    FOR rec IN
        SELECT child.relname AS part,
               (regexp_match(pg_get_expr(child.relpartbound, child.oid),
                             'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper_bound
        FROM pg_inherits
        JOIN dockping_partitioned parent ON parent.oid = pg_inherits.inhparent
        JOIN pg_class child ON child.oid = pg_inherits.inhrelid
    LOOP
        IF rec.upper_bound <= cutoff THEN
            EXECUTE format('DROP TABLE %I', rec.part);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END $$;

-- upsert_agent --
-- Find or make an agent's id by its name.
INSERT INTO agents (name) VALUES (%(name)s)
ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
RETURNING agent_id

-- upsert_containers --
-- Find or make container keys; non-empty metadata from the batch replaces what is stored.
INSERT INTO containers AS c (agent_id, container_id, name, image, compose_project, compose_service)
SELECT %(agent_id)s, * FROM unnest(%(container_ids)s::text[], %(names)s::text[], %(images)s::text[],
                                  %(projects)s::text[], %(services)s::text[])
ORDER BY 2
ON CONFLICT (agent_id, container_id) DO UPDATE SET
    name = CASE WHEN EXCLUDED.name <> '' THEN EXCLUDED.name ELSE c.name END,
    image = CASE WHEN EXCLUDED.image <> '' THEN EXCLUDED.image ELSE c.image END,
    compose_project = CASE WHEN EXCLUDED.compose_project <> '' THEN EXCLUDED.compose_project
                           ELSE c.compose_project END,
    compose_service = CASE WHEN EXCLUDED.compose_service <> '' THEN EXCLUDED.compose_service
                           ELSE c.compose_service END
RETURNING container_id, container_key

-- upsert_targets --
-- Find or make target ids; the network name is refreshed when it is given.
INSERT INTO targets AS t (container_key, ip, port, protocol, network)
SELECT * FROM unnest(%(container_keys)s::integer[], %(ips)s::inet[], %(ports)s::integer[],
                     %(protocols)s::text[], %(networks)s::text[])
ORDER BY 1, 2, 3, 4
ON CONFLICT (container_key, ip, port, protocol) DO UPDATE SET
    network = CASE WHEN EXCLUDED.network <> '' THEN EXCLUDED.network ELSE t.network END
RETURNING container_key, host(ip), port, protocol, target_id

-- insert_probes --
-- Append probe events, skipping those already stored; return the new ones.
INSERT INTO probe_events (time, target_id, latency_us)
SELECT time, target_id, latency_us
FROM unnest(%(times)s::timestamptz[], %(target_ids)s::integer[], %(latencies)s::integer[])
     AS incoming (time, target_id, latency_us)
ORDER BY target_id, time
ON CONFLICT DO NOTHING
RETURNING target_id, time, latency_us

-- lock_targets --
-- Serialise projection updates per target between concurrent ingest transactions.
SELECT target_id FROM targets WHERE target_id = ANY(%(target_ids)s)
ORDER BY target_id FOR NO KEY UPDATE

-- select_target_states --
-- The stored latest state of some targets.
SELECT target_id, last_probe_at, latency_us, last_ok_at, status_since, consecutive_failures,
       last_error, last_error_at
FROM target_state WHERE target_id = ANY(%(target_ids)s)

-- upsert_target_states --
-- Write folded states.
INSERT INTO target_state AS s (target_id, last_probe_at, latency_us, last_ok_at, status_since,
                               consecutive_failures, last_error, last_error_at)
SELECT * FROM unnest(%(target_ids)s::integer[], %(last_probe_at)s::timestamptz[],
                     %(latency_us)s::integer[], %(last_ok_at)s::timestamptz[],
                     %(status_since)s::timestamptz[], %(consecutive_failures)s::integer[],
                     %(last_error)s::smallint[], %(last_error_at)s::timestamptz[])
ON CONFLICT (target_id) DO UPDATE SET
    last_probe_at = EXCLUDED.last_probe_at,
    latency_us = EXCLUDED.latency_us,
    last_ok_at = EXCLUDED.last_ok_at,
    status_since = EXCLUDED.status_since,
    consecutive_failures = EXCLUDED.consecutive_failures,
    last_error = EXCLUDED.last_error,
    last_error_at = EXCLUDED.last_error_at

-- insert_container_events --
-- Append container events, skipping those already stored; return the new ones.
INSERT INTO container_events (time, container_key, action, exit_code, detail)
SELECT * FROM unnest(%(times)s::timestamptz[], %(container_keys)s::integer[], %(actions)s::text[],
                     %(exit_codes)s::integer[], %(details)s::jsonb[])
ORDER BY 2, 3, 1
ON CONFLICT DO NOTHING
RETURNING time, container_key, action, exit_code, detail

-- update_container_state --
-- Fold new lifecycle events into container_state: the latest (time, action) wins.
INSERT INTO container_state AS s (container_key, action, action_at, exit_code)
SELECT DISTINCT ON (container_key) container_key, action, time, exit_code
FROM unnest(%(times)s::timestamptz[], %(container_keys)s::integer[], %(actions)s::text[],
            %(exit_codes)s::integer[]) AS e (time, container_key, action, exit_code)
WHERE action IN ('create', 'start', 'restart', 'stop', 'die', 'kill', 'oom', 'pause', 'unpause',
                 'destroy')
ORDER BY container_key, time DESC, action DESC
ON CONFLICT (container_key) DO UPDATE SET
    action = EXCLUDED.action, action_at = EXCLUDED.action_at, exit_code = EXCLUDED.exit_code
WHERE (EXCLUDED.action_at, EXCLUDED.action) > (s.action_at, s.action)

-- update_container_health --
-- Fold new health_status events into container_state: the latest wins.
INSERT INTO container_state AS s (container_key, action, action_at, health, health_at)
SELECT DISTINCT ON (container_key) container_key, 'create', '-infinity'::timestamptz, health, time
FROM unnest(%(times)s::timestamptz[], %(container_keys)s::integer[], %(healths)s::text[])
     AS e (time, container_key, health)
ORDER BY container_key, time DESC
ON CONFLICT (container_key) DO UPDATE SET health = EXCLUDED.health, health_at = EXCLUDED.health_at
WHERE s.health_at IS NULL OR EXCLUDED.health_at > s.health_at

-- insert_heartbeats --
-- Append heartbeats, skipping those already stored, and fold the newest into agent_state.
WITH new AS (
    INSERT INTO heartbeats (time, agent_id, version, docker_ok, targets, spool_bytes, dropped)
    SELECT time, %(agent_id)s, version, docker_ok, targets, spool_bytes, dropped
    FROM unnest(%(times)s::timestamptz[], %(versions)s::text[], %(docker_ok)s::boolean[],
                %(targets)s::integer[], %(spool_bytes)s::bigint[], %(dropped)s::bigint[])
         AS h (time, version, docker_ok, targets, spool_bytes, dropped)
    ON CONFLICT DO NOTHING
    RETURNING *
), newest AS (
    SELECT * FROM new ORDER BY time DESC LIMIT 1
), folded AS (
    INSERT INTO agent_state AS s (agent_id, last_heartbeat_at, version, docker_ok, targets,
                                  spool_bytes, dropped)
    SELECT agent_id, time, version, docker_ok, targets, spool_bytes, dropped FROM newest
    ON CONFLICT (agent_id) DO UPDATE SET
        last_heartbeat_at = EXCLUDED.last_heartbeat_at, version = EXCLUDED.version,
        docker_ok = EXCLUDED.docker_ok, targets = EXCLUDED.targets,
        spool_bytes = EXCLUDED.spool_bytes, dropped = EXCLUDED.dropped
    WHERE EXCLUDED.last_heartbeat_at > s.last_heartbeat_at
)
SELECT count(*) FROM new

-- ensure_partitions --
-- Make the partitions that cover a time range (a no-op on TimescaleDB).
SELECT dockping_ensure_partitions(%(start_at)s, %(end_at)s, %(step)s)

-- drop_partitions --
-- Drop whole partitions or chunks older than the retention cutoff.
SELECT dockping_drop_partitions(%(cutoff)s)

-- notify_events --
-- Tell listeners (query, notifier) that events were committed.
SELECT pg_notify('dockping_events', %(payload)s)

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
-- Find or make target ids; the network name, the vantage and the probe window (interval and
-- timeout, as a probe event carries them) are refreshed when given. A new target is made with
-- its window, so that its first batch writes it once.
INSERT INTO targets AS t (container_key, ip, port, protocol, network, vantage, interval_ms,
                          timeout_ms)
SELECT * FROM unnest(%(container_keys)s::integer[], %(ips)s::inet[], %(ports)s::integer[],
                     %(protocols)s::text[], %(networks)s::text[], %(vantages)s::smallint[],
                     %(intervals)s::integer[], %(timeouts)s::integer[])
ORDER BY 1, 2, 3, 4
ON CONFLICT (container_key, ip, port, protocol) DO UPDATE SET
    network = CASE WHEN EXCLUDED.network <> '' THEN EXCLUDED.network ELSE t.network END,
    vantage = coalesce(EXCLUDED.vantage, t.vantage),
    interval_ms = coalesce(EXCLUDED.interval_ms, t.interval_ms),
    timeout_ms = coalesce(EXCLUDED.timeout_ms, t.timeout_ms)
RETURNING container_key, host(ip), port, protocol, target_id

-- append_probes --
-- Append probe events (three parallel arrays sent in binary) and fold them into their targets'
-- state: see db/schema/10_dockping_append_probes.sql. Returns the events appended and the
-- targets they changed (null: every target of the batch). With notify, the call is a whole
-- batch: it takes the agent's lock and sends the NOTIFY itself.
SELECT accepted, changed
FROM dockping_append_probes(%(agent_id)s, %(agent)s, %(times)b, %(target_ids)b, %(latencies)b,
                            %(log_minutes)s, %(notify)s)

-- lock_agent --
-- Serialise the batches of one agent. Every target belongs to one agent, so no other
-- transaction writes the projection rows of this batch's targets meanwhile; one lock
-- instead of a row lock per target (which would cost a WAL record each).
SELECT pg_advisory_xact_lock(dockping_lock('agent')::integer, %(agent_id)s)

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

-- update_network_state --
-- Fold new network_disconnect events into network_state: the latest disconnect wins.
INSERT INTO network_state AS s (container_key, network, detached_at)
SELECT container_key, network, max(time)
FROM unnest(%(times)s::timestamptz[], %(container_keys)s::integer[], %(networks)s::text[])
     AS e (time, container_key, network)
GROUP BY container_key, network
ORDER BY container_key, network
ON CONFLICT (container_key, network) DO UPDATE SET detached_at = EXCLUDED.detached_at
WHERE EXCLUDED.detached_at > s.detached_at

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

-- configure_storage --
-- Apply the storage settings: chunk interval, compression and retention (TimescaleDB).
SELECT dockping_configure_storage(%(partition_interval)s, %(compress_after)s, %(retention)s)

-- uncompacted_partitions --
-- probe_events partitions (plain PostgreSQL) that ended before a time, not yet compacted.
SELECT child.relname::text
FROM pg_inherits
JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
JOIN pg_class child ON child.oid = pg_inherits.inhrelid
WHERE parent.relname = 'probe_events'
  AND (regexp_match(pg_get_expr(child.relpartbound, child.oid),
                    'TO \(''([^'']+)''\)'))[1]::timestamptz <= %(before)s
  AND obj_description(child.oid, 'pg_class') IS DISTINCT FROM 'dockping: compacted'
ORDER BY 1

-- compaction_try_lock --
-- Take the compactor's session lock, so that one ingest replica at a time compacts.
SELECT pg_try_advisory_lock(dockping_lock('compaction'))

-- compaction_unlock --
-- Release the compactor's session lock.
SELECT pg_advisory_unlock(dockping_lock('compaction'))

-- invalid_index --
-- An index by that name that a failed CREATE INDEX CONCURRENTLY left invalid.
SELECT 1 FROM pg_index WHERE indexrelid = to_regclass(%(name)s) AND NOT indisvalid

-- drop_partitions --
-- Drop whole partitions or chunks older than the retention cutoff.
SELECT dockping_drop_partitions(%(cutoff)s)

-- notify_events --
-- Tell listeners (query, notifier) that events were committed: see dockping_notify_events.
SELECT dockping_notify_events(%(agent)s, %(targets)s::integer[], %(containers)s::integer[])

-- append_probe_details --
-- Append the changes among a batch's http and https probe events (see migration 14): an
-- event is a row of probe_details when its status differs from the one before it (the batch's
-- previous event of the target, else the newest row at or before it), when it brings a
-- certificate expiry other than the last one known, or when it is its target's first of the
-- UTC day (so that a day's partition holds the state it starts with, and retention never
-- drops the only row of a target stable for longer). Rows already stored are skipped; the
-- newest folds into target_detail. The caller holds lock_agent, as for the events.
WITH incoming AS (
    SELECT i.*, lag(i.time) OVER w IS NOT NULL AS follows,
           lag(i.http_status) OVER w AS prev_status, lag(i.tls_not_after) OVER w AS prev_tls
    FROM unnest(%(times)s::timestamptz[], %(target_ids)s::integer[],
                %(http_statuses)s::smallint[], %(tls_not_after)s::timestamptz[])
         AS i (time, target_id, http_status, tls_not_after)
    WINDOW w AS (PARTITION BY i.target_id, date_bin('1 day', i.time, timestamptz 'epoch')
                 ORDER BY i.time)
), compared AS (
    SELECT n.time, n.target_id, n.http_status, n.tls_not_after,
           n.follows OR s.target_id IS NOT NULL AS has_before,
           CASE WHEN n.follows THEN n.prev_status ELSE s.http_status END AS before_status,
           coalesce(CASE WHEN n.follows THEN n.prev_tls END, k.tls_not_after) AS before_tls
    FROM incoming n
    LEFT JOIN LATERAL (
        SELECT d.target_id, d.http_status FROM probe_details d
        WHERE d.target_id = n.target_id AND d.time <= n.time
          AND d.time >= date_bin('1 day', n.time, timestamptz 'epoch')
        ORDER BY d.time DESC LIMIT 1
    ) s ON NOT n.follows
    LEFT JOIN LATERAL (
        SELECT d.tls_not_after FROM probe_details d
        WHERE d.target_id = n.target_id AND d.time <= n.time AND d.tls_not_after IS NOT NULL
          AND d.time >= date_bin('1 day', n.time, timestamptz 'epoch')
        ORDER BY d.time DESC LIMIT 1
    ) k ON n.tls_not_after IS NOT NULL
), new AS (
    INSERT INTO probe_details (time, target_id, http_status, tls_not_after)
    SELECT time, target_id, http_status,
           CASE WHEN NOT has_before OR tls_not_after IS DISTINCT FROM before_tls
                THEN tls_not_after END
    FROM compared
    WHERE NOT has_before
       OR http_status IS DISTINCT FROM before_status
       OR (tls_not_after IS NOT NULL AND tls_not_after IS DISTINCT FROM before_tls)
    ORDER BY target_id, time
    ON CONFLICT DO NOTHING
    RETURNING *
), newest AS (
    SELECT DISTINCT ON (target_id) * FROM new ORDER BY target_id, time DESC
)
INSERT INTO target_detail AS s (target_id, changed_at, http_status, tls_not_after)
SELECT target_id, time, http_status,
       (SELECT n.tls_not_after FROM new n WHERE n.target_id = newest.target_id
          AND n.tls_not_after IS NOT NULL ORDER BY n.time DESC LIMIT 1)
FROM newest
ORDER BY target_id
ON CONFLICT (target_id) DO UPDATE SET
    changed_at = EXCLUDED.changed_at,
    http_status = EXCLUDED.http_status,
    tls_not_after = coalesce(EXCLUDED.tls_not_after, s.tls_not_after)
WHERE EXCLUDED.changed_at > s.changed_at
-- append_inventory --
-- Append an agent's inventory (its containers' keys) and fold it when it is the newest: see
-- dockping_append_inventory in 0013_status.sql. Returns whether it was new and the containers
-- whose absence changed.
SELECT accepted, changed
FROM dockping_append_inventory(%(agent_id)s, %(time)s, %(container_keys)b)

-- update_target_windows --
-- Store targets' probe intervals and timeouts, as their probe events carry them.
UPDATE targets t SET interval_ms = w.interval_ms, timeout_ms = w.timeout_ms
FROM unnest(%(target_ids)s::integer[], %(intervals)s::integer[], %(timeouts)s::integer[])
     AS w (target_id, interval_ms, timeout_ms)
WHERE t.target_id = w.target_id
  AND (t.interval_ms, t.timeout_ms) IS DISTINCT FROM (w.interval_ms, w.timeout_ms)

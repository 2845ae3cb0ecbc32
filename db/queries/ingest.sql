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
-- Find or make target ids; the network name and the vantage are refreshed when given.
INSERT INTO targets AS t (container_key, ip, port, protocol, network, vantage)
SELECT * FROM unnest(%(container_keys)s::integer[], %(ips)s::inet[], %(ports)s::integer[],
                     %(protocols)s::text[], %(networks)s::text[], %(vantages)s::smallint[])
ORDER BY 1, 2, 3, 4
ON CONFLICT (container_key, ip, port, protocol) DO UPDATE SET
    network = CASE WHEN EXCLUDED.network <> '' THEN EXCLUDED.network ELSE t.network END,
    vantage = coalesce(EXCLUDED.vantage, t.vantage)
RETURNING container_key, host(ip), port, protocol, target_id

-- append_probes --
-- Append probe events, skipping those already stored, and fold the new ones into the latest
-- state of their targets, in one statement. The incoming placeholder takes incoming_arrays
-- (or, to compare, a COPY-filled temporary table); the rollup placeholder takes rollup_minutes
-- on plain PostgreSQL (TimescaleDB keeps its rollup by itself). The caller holds lock_agent, so
-- target_state as read here is current. A target whose new events are not all newer than its
-- state is returned as late, left alone, and refolded from its events by the caller.
-- Fold of a target's new events after its state (the trailing run is the events with the
-- status of the newest one, after the newest event of the other status, flip_at):
--   status_since: the state's when no flip is in the batch and the status goes on; else the
--   run's start. consecutive_failures: 0 when up; the state's count plus the run when down
--   goes on; else the run.
WITH pending AS (
    SELECT * FROM {incoming}
), new AS (
    {new}
){rollup}, span AS (
    SELECT target_id, count(*) AS events, min(time) AS first_at, max(time) AS last_at,
           max(time) FILTER (WHERE latency_us >= 0) AS last_ok_at,
           max(time) FILTER (WHERE latency_us < 0) AS last_error_at
    FROM new GROUP BY target_id
), flip AS (
    -- The newest event is a success exactly when the newest success is the newest event.
    SELECT *, coalesce(last_ok_at = last_at, false) AS last_ok,
           CASE WHEN last_ok_at = last_at THEN last_error_at ELSE last_ok_at END AS flip_at
    FROM span
), batch AS (
    SELECT f.target_id, f.last_at, f.last_ok, f.events, f.first_at, f.last_ok_at, f.flip_at,
           f.last_error_at,
           max(n.latency_us) FILTER (WHERE n.time = f.last_at) AS last_latency,
           (max(-n.latency_us) FILTER (WHERE n.time = f.last_error_at))::smallint AS last_error,
           min(n.time) FILTER (WHERE n.time > coalesce(f.flip_at, '-infinity')) AS since,
           (count(*) FILTER (WHERE n.time > coalesce(f.flip_at, '-infinity')))::integer AS length,
           t.last_probe_at AS stored_last_probe_at
    FROM flip f
    JOIN new n USING (target_id)
    LEFT JOIN target_state t USING (target_id)
    GROUP BY f.target_id, f.last_at, f.last_ok, f.events, f.first_at, f.last_ok_at, f.flip_at,
             f.last_error_at, t.last_probe_at
), merged AS (
    UPDATE target_state t SET
        last_probe_at = b.last_at,
        latency_us = b.last_latency,
        last_ok_at = coalesce(b.last_ok_at, t.last_ok_at),
        status_since = CASE WHEN b.flip_at IS NULL AND (t.latency_us >= 0) = b.last_ok
                            THEN t.status_since ELSE b.since END,
        consecutive_failures = CASE WHEN b.last_ok THEN 0
                                    WHEN b.flip_at IS NULL AND t.latency_us < 0
                                    THEN t.consecutive_failures + b.length
                                    ELSE b.length END,
        last_error = coalesce(b.last_error, t.last_error),
        last_error_at = coalesce(b.last_error_at, t.last_error_at)
    FROM batch b
    WHERE t.target_id = b.target_id AND b.first_at > t.last_probe_at
), first AS (
    INSERT INTO target_state (target_id, last_probe_at, latency_us, last_ok_at, status_since,
                              consecutive_failures, last_error, last_error_at)
    SELECT target_id, last_at, last_latency, last_ok_at, since,
           CASE WHEN last_ok THEN 0 ELSE length END, last_error, last_error_at
    FROM batch WHERE stored_last_probe_at IS NULL
    ORDER BY target_id
)
SELECT target_id, events, first_at <= stored_last_probe_at AS late FROM batch

-- append_probes_once --
-- Append a batch of at most one probe event per target and fold it into target_state: the
-- usual batch (each target is probed once in a few seconds). See 0012_append_function.sql.
-- Outside a transaction (with notify and refuse_late) it is a whole batch in one round trip;
-- in one, after lock_agent, it returns its late targets for the caller to refold.
SELECT accepted, late, changed
FROM dockping_append_probes_once(%(agent_id)s, %(agent)s, %(times)b, %(target_ids)b,
                                 %(latencies)b, %(log_minutes)s, %(notify)s, %(refuse_late)s)

-- insert_new_probes --
-- Append the `pending` probe events (a CTE of append_probes; dockping_append_probes_once has
-- the same lookup), skipping those already stored, and return the ones inserted. Each is
-- looked up by its identity, which works in every partition, a compacted one (no unique
-- index: db/compaction.py) included; no other transaction stores events of the batch's
-- targets meanwhile (the caller holds lock_agent), so no speculative insert (ON CONFLICT) is
-- needed on top.
INSERT INTO probe_events (time, target_id, latency_us)
    SELECT DISTINCT ON (target_id, time) time, target_id, latency_us
    FROM pending p
    WHERE NOT EXISTS (SELECT FROM probe_events e
                      WHERE e.target_id = p.target_id
                        AND dockping_bucket(e.time) = dockping_bucket(p.time)
                        AND e.time = p.time)
    ORDER BY target_id, time, latency_us
    RETURNING target_id, time, latency_us

-- incoming_arrays --
-- The incoming probe events of append_probes, as three parallel arrays sent in binary.
unnest(%(times)b::timestamptz[], %(target_ids)b::integer[], %(latencies)b::integer[])
    AS incoming (time, target_id, latency_us)

-- rollup_minutes --
-- The CTE that logs the minutes new probe events fell in (plain PostgreSQL), for
-- dockping_refresh_rollups() to recompute; spliced into append_probes after `new`. One small
-- row per minute instead of an upsert per target and minute, in the batch's transaction.
, rollup AS (
    INSERT INTO rollup_log (bucket)
    SELECT DISTINCT date_bin(interval '1 minute', time, timestamptz 'epoch') FROM new
)

-- lock_agent --
-- Serialise the batches of one agent. Every target belongs to one agent, so no other
-- transaction writes the projection rows of this batch's targets meanwhile; one lock
-- instead of a row lock per target (which would cost a WAL record each).
SELECT pg_advisory_xact_lock(dockping_lock('agent')::integer, %(agent_id)s)

-- upsert_target_states --
-- Write folded states (of targets refolded from their events after a late event).
INSERT INTO target_state AS s (target_id, last_probe_at, latency_us, last_ok_at, status_since,
                               consecutive_failures, last_error, last_error_at)
SELECT * FROM unnest(%(target_ids)b::integer[], %(last_probe_at)b::timestamptz[],
                     %(latency_us)b::integer[], %(last_ok_at)b::timestamptz[],
                     %(status_since)b::timestamptz[], %(consecutive_failures)b::integer[],
                     %(last_error)b::smallint[], %(last_error_at)b::timestamptz[])
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
-- Tell listeners (query, notifier) that events were committed.
SELECT pg_notify('dockping_events', %(payload)s)

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

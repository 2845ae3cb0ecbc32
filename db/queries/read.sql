-- target_by_id --
-- One target with its current state, and its vantage's code (targets.vantage).
SELECT l.target_id, l.agent, l.container_id, l.container_name, l.image, l.compose_project,
       l.network, l.ip, l.port, l.protocol, l.status, l.latency_ms, l.error, l.last_probe_at,
       l.last_ok_at, l.status_since, l.consecutive_failures, l.last_error, l.stale_since,
       d.http_status, cs.health, t.vantage AS vantage_code
FROM dockping_latest(%(as_of)s, %(stale_after)s, %(default_window)s, %(silent_after)s) l
JOIN targets t USING (target_id)
LEFT JOIN target_detail d USING (target_id)
LEFT JOIN container_state cs ON cs.container_key = t.container_key
WHERE l.target_id = %(target_id)s

-- target_events_page --
-- A target's raw probe events, newest first, after a keyset position (in the order of the
-- backend's indexes: see dockping_target_events in migration 11).
SELECT e.time, e.latency_us >= 0 AS ok,
       CASE WHEN e.latency_us >= 0 THEN e.latency_us / 1000.0 END AS latency_ms,
       pe.error
FROM dockping_target_events(%(target_id)s, %(before)s::timestamptz, %(limit)s) e
LEFT JOIN probe_errors pe ON pe.code = -e.latency_us
ORDER BY e.time DESC

-- target_exists --
-- Whether a target id exists.
SELECT 1 FROM targets WHERE target_id = %(target_id)s

-- agents_list --
-- Every agent with its last heartbeat.
SELECT a.name AS agent, s.last_heartbeat_at, s.version, s.docker_ok, s.targets, s.spool_bytes,
       s.dropped
FROM agents a LEFT JOIN agent_state s USING (agent_id)
ORDER BY a.name

-- metrics_targets --
-- The state of every target with one of some statuses (all but gone), for /metrics.
SELECT l.agent, l.container_name, l.ip, l.port, l.protocol, l.status, l.latency_ms,
       d.http_status, extract(epoch FROM d.tls_not_after)::float8 AS tls_not_after
FROM dockping_latest(%(as_of)s, %(stale_after)s, %(default_window)s, %(silent_after)s) l
LEFT JOIN target_detail d USING (target_id)
WHERE l.status = ANY(%(statuses)s::text[])

-- target_detail --
-- One target with its current state and its container's key, for the detail page.
SELECT l.target_id, l.agent, l.container_id, l.container_name, l.image, l.compose_project,
       l.network, l.ip, l.port, l.protocol, l.status, l.latency_ms, l.error, l.last_probe_at,
       l.last_ok_at, l.status_since, l.consecutive_failures, l.last_error, l.stale_since,
       l.container_key, d.http_status, d.tls_not_after, cs.health, t.vantage AS vantage_code
FROM dockping_latest(%(as_of)s, %(stale_after)s, %(default_window)s, %(silent_after)s) l
JOIN targets t USING (target_id)
LEFT JOIN target_detail d USING (target_id)
LEFT JOIN container_state cs ON cs.container_key = t.container_key
WHERE l.target_id = %(target_id)s

-- stream_rows --
-- The current state of some targets, for live updates.
SELECT target_id, container_name, status, latency_ms, error, last_probe_at, last_ok_at,
       status_since, stale_since, container_key
FROM dockping_latest(%(as_of)s, %(stale_after)s, %(default_window)s, %(silent_after)s)
WHERE target_id = ANY(%(target_ids)s::integer[])

-- containers_by_id --
-- The containers with this Docker id (exact, or a hex prefix), on one agent or all.
SELECT c.container_key, a.name AS agent, c.container_id, c.name, c.image, c.compose_project,
       c.compose_service
FROM containers c JOIN agents a USING (agent_id)
WHERE (c.container_id = %(container_id)s
       OR (%(prefix)s::text IS NOT NULL AND c.container_id LIKE %(prefix)s::text))
  AND (%(agent)s::text IS NULL OR a.name = %(agent)s::text)
ORDER BY a.name
LIMIT 50

-- container_events_page --
-- Lifecycle events of some containers, newest first, after a keyset position.
SELECT e.time, e.container_key, e.action, e.exit_code, e.detail
FROM container_events e
WHERE e.container_key = ANY(%(container_keys)s::integer[])
  AND (%(before)s::timestamptz IS NULL
       OR (e.time, e.container_key, e.action)
          < (%(before)s::timestamptz, %(before_key)s::integer, %(before_action)s::text))
ORDER BY e.time DESC, e.container_key DESC, e.action DESC
LIMIT %(limit)s

-- latency_raw --
-- Latency points straight from the raw probe events, for buckets below a minute.
SELECT date_bin(%(bucket)s::interval, e.time, timestamptz '1970-01-01 00:00:00+00') AS time,
       count(*)::bigint AS probes,
       count(*) FILTER (WHERE e.latency_us < 0)::bigint AS failures,
       (avg(e.latency_us) FILTER (WHERE e.latency_us >= 0) / 1000.0)::float8 AS avg_ms,
       (percentile_cont(0.5) WITHIN GROUP (ORDER BY e.latency_us)
            FILTER (WHERE e.latency_us >= 0) / 1000.0)::float8 AS p50_ms,
       (percentile_cont(0.95) WITHIN GROUP (ORDER BY e.latency_us)
            FILTER (WHERE e.latency_us >= 0) / 1000.0)::float8 AS p95_ms,
       (max(e.latency_us) FILTER (WHERE e.latency_us >= 0) / 1000.0)::float8 AS max_ms
FROM probe_events e
WHERE e.target_id = %(target_id)s AND e.time >= %(start)s AND e.time < %(end)s
  AND dockping_bucket(e.time) BETWEEN dockping_bucket(%(start)s::timestamptz)
                                 AND dockping_bucket(%(end)s::timestamptz)
GROUP BY 1
ORDER BY 1

-- addresses_uptime --
-- Probes and failures per target since a time: the whole hours from %(hour)s on from the
-- hourly rollup, the minutes before it from the minute rollup.
SELECT u.target_id, sum(u.probes)::bigint AS probes, sum(u.failures)::bigint AS failures
FROM (
    SELECT m.target_id, m.probes, m.failures
    FROM latency_minute m
    WHERE m.target_id = ANY(%(target_ids)s::integer[])
      AND m.bucket >= %(since)s AND m.bucket < %(hour)s
    UNION ALL
    SELECT h.target_id, h.probes, h.failures
    FROM latency_hour h
    WHERE h.target_id = ANY(%(target_ids)s::integer[]) AND h.bucket >= %(hour)s
) u
GROUP BY u.target_id

-- addresses_sparkline --
-- Per-minute latency of some targets since a time, for the sparklines: one row per target
-- with its minutes as arrays, oldest first (seconds after `since`, average, failures).
SELECT m.target_id,
       array_agg(extract(epoch FROM m.bucket - %(since)s::timestamptz)::float8 ORDER BY m.bucket),
       array_agg(m.avg_ms::float8 ORDER BY m.bucket),
       array_agg(m.failures::int8 ORDER BY m.bucket)
FROM latency_minute m
WHERE m.target_id = ANY(%(target_ids)s::integer[]) AND m.bucket >= %(since)s
GROUP BY m.target_id

-- silent_agents --
-- Agents silent as of a time (dockping_agent_silent: the rule their targets' status uses too).
SELECT a.name AS agent, s.last_heartbeat_at
FROM agents a LEFT JOIN agent_state s USING (agent_id)
WHERE dockping_agent_silent(s.last_heartbeat_at, a.first_seen_at, %(as_of)s, %(silent_after)s)
ORDER BY a.name
LIMIT 20

-- relation_exists --
-- Whether a table or view exists (for views that later migrations add).
SELECT to_regclass(%(name)s) IS NOT NULL AS present

-- notifications_recent --
-- The latest notifications about one target (from a view a later migration adds).
SELECT time, kind, channel, status, message
FROM notification_history
WHERE target_id = %(target_id)s
ORDER BY time DESC
LIMIT %(limit)s

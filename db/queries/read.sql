-- addresses_page --
-- One page of latest_state; the sort key, keyset and order come from a fixed list in query/addresses.py.
SELECT target_id, agent, container_id, container_name, image, compose_project, network, ip, port,
       protocol, status, latency_ms, error, last_probe_at, last_ok_at, status_since,
       consecutive_failures, last_error, {sort_key} AS sort_key
FROM latest_state
WHERE NOT removed
  AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
  AND (%(agent)s::text IS NULL OR agent = %(agent)s::text)
  AND (%(q)s::text IS NULL OR container_name ILIKE %(q)s OR image ILIKE %(q)s OR ip ILIKE %(q)s)
  {keyset}
ORDER BY {order}
LIMIT %(limit)s

-- target_by_id --
-- One target with its current state.
SELECT target_id, agent, container_id, container_name, image, compose_project, network, ip, port,
       protocol, status, latency_ms, error, last_probe_at, last_ok_at, status_since,
       consecutive_failures, last_error, NULL AS sort_key
FROM latest_state WHERE target_id = %(target_id)s

-- target_events_page --
-- A target's raw probe events, newest first, after a keyset position.
SELECT e.time, e.latency_us >= 0 AS ok,
       CASE WHEN e.latency_us >= 0 THEN e.latency_us / 1000.0 END AS latency_ms,
       pe.error
FROM probe_events e
LEFT JOIN probe_errors pe ON pe.code = -e.latency_us
WHERE e.target_id = %(target_id)s
  AND (%(before)s::timestamptz IS NULL OR e.time < %(before)s::timestamptz)
ORDER BY e.time DESC
LIMIT %(limit)s

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
-- The state of every current target, for /metrics.
SELECT agent, container_name, ip, port, protocol, status, latency_ms
FROM latest_state WHERE NOT removed

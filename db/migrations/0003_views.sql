-- The public SQL surface: the same views on both backends.

-- Every probe, readable: one row per probe event.
CREATE VIEW probe_history AS
SELECT e.time,
       e.target_id,
       a.name AS agent,
       c.container_id,
       c.name AS container_name,
       t.network,
       host(t.ip) AS ip,
       t.port,
       t.protocol,
       e.latency_us >= 0 AS ok,
       CASE WHEN e.latency_us >= 0 THEN e.latency_us / 1000.0 END AS latency_ms,
       pe.error
FROM probe_events e
JOIN targets t USING (target_id)
JOIN containers c USING (container_key)
JOIN agents a USING (agent_id)
LEFT JOIN probe_errors pe ON pe.code = -e.latency_us;

-- Every container lifecycle event, readable.
CREATE VIEW container_history AS
SELECT e.time,
       a.name AS agent,
       c.container_id,
       c.name AS container_name,
       c.image,
       e.action,
       e.exit_code,
       e.detail
FROM container_events e
JOIN containers c USING (container_key)
JOIN agents a USING (agent_id);

-- The latest state of every address, with its status:
--   stopped: the container's last lifecycle event (stop, die, kill, destroy) is newer than the last probe;
--   unknown: never probed;
--   up / down: the last probe succeeded / failed.
CREATE VIEW latest_state AS
SELECT t.target_id,
       a.name AS agent,
       c.container_id,
       c.name AS container_name,
       c.image,
       c.compose_project,
       t.network,
       host(t.ip) AS ip,
       t.port,
       t.protocol,
       CASE
           WHEN cs.action IN ('stop', 'die', 'kill', 'destroy', 'oom')
                AND (s.last_probe_at IS NULL OR cs.action_at >= s.last_probe_at) THEN 'stopped'
           -- A paused container serves nothing, though its kernel may still complete a few
           -- handshakes: it is down from the pause event on, not only once probes time out.
           WHEN cs.action = 'pause' THEN 'down'
           WHEN s.target_id IS NULL THEN 'unknown'
           WHEN s.latency_us >= 0 THEN 'up'
           ELSE 'down'
       END AS status,
       CASE WHEN s.latency_us >= 0 THEN s.latency_us / 1000.0 END AS latency_ms,
       CASE
           WHEN s.latency_us < 0 THEN pe.error
           WHEN cs.action = 'pause' THEN 'paused'
       END AS error,
       s.last_probe_at,
       s.last_ok_at,
       CASE
           WHEN cs.action IN ('stop', 'die', 'kill', 'destroy', 'oom')
                AND (s.last_probe_at IS NULL OR cs.action_at >= s.last_probe_at) THEN cs.action_at
           WHEN cs.action = 'pause' AND (s.latency_us >= 0 OR s.status_since < cs.action_at)
               THEN cs.action_at
           ELSE s.status_since
       END AS status_since,
       s.consecutive_failures,
       le.error AS last_error,
       s.last_error_at,
       -- Gone: the container was removed, or left the target's network after its last probe
       -- while running (a stopping container leaves its networks too, and is `stopped`).
       coalesce(cs.action = 'destroy', false)
           OR coalesce(ns.detached_at >= coalesce(s.last_probe_at, '-infinity')
                       AND cs.action IS DISTINCT FROM 'stop' AND cs.action IS DISTINCT FROM 'die'
                       AND cs.action IS DISTINCT FROM 'kill' AND cs.action IS DISTINCT FROM 'oom',
                       false) AS removed
FROM targets t
JOIN containers c USING (container_key)
JOIN agents a USING (agent_id)
LEFT JOIN target_state s USING (target_id)
LEFT JOIN container_state cs USING (container_key)
LEFT JOIN network_state ns ON ns.container_key = t.container_key AND ns.network = t.network
LEFT JOIN probe_errors pe ON pe.code = -s.latency_us
LEFT JOIN probe_errors le ON le.code = s.last_error;

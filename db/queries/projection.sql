-- refold_target_states --
-- Fold every target's stored probe events into its state, with the write path's fold
-- (dockping_append_probes, given no events and every target to refold).
SELECT dockping_append_probes(NULL, NULL, '{}', '{}', '{}', false, false,
                              ARRAY(SELECT target_id FROM targets ORDER BY 1))

-- count_target_states --
-- Rows of target_state.
SELECT count(*) FROM target_state

-- delete_target_states --
-- Forget the folded state of every target (before a full rebuild).
DELETE FROM target_state

-- rebuild_container_states --
-- Fold every stored container event into container_state.
INSERT INTO container_state (container_key, action, action_at, exit_code, health, health_at)
SELECT l.container_key, l.action, l.time, l.exit_code, h.detail ->> 'health', h.time
FROM (SELECT DISTINCT ON (container_key) container_key, action, time, exit_code
      FROM container_events
      WHERE action IN ('create', 'start', 'restart', 'stop', 'die', 'kill', 'oom', 'pause',
                       'unpause', 'destroy')
      ORDER BY container_key, time DESC, action DESC) l
LEFT JOIN (SELECT DISTINCT ON (container_key) container_key, time, detail
           FROM container_events WHERE action = 'health_status'
           ORDER BY container_key, time DESC) h USING (container_key)

-- delete_container_states --
-- Forget every folded container state (before a full rebuild).
DELETE FROM container_state

-- rebuild_agent_states --
-- Fold every stored heartbeat into agent_state.
INSERT INTO agent_state (agent_id, last_heartbeat_at, version, docker_ok, targets, spool_bytes,
                         dropped)
SELECT DISTINCT ON (agent_id) agent_id, time, version, docker_ok, targets, spool_bytes, dropped
FROM heartbeats ORDER BY agent_id, time DESC

-- delete_agent_states --
-- Forget every folded agent state (before a full rebuild).
DELETE FROM agent_state

-- delete_rollups --
-- Forget the rollups and their logs (plain PostgreSQL, before a full rebuild).
DELETE FROM probe_minute;
DELETE FROM probe_hour;
DELETE FROM rollup_log;
DELETE FROM rollup_hour_log

-- log_every_minute --
-- Log every minute that holds probe events, so that the next refresh recomputes them all.
INSERT INTO rollup_log (bucket)
SELECT DISTINCT date_bin(interval '1 minute', time, timestamptz 'epoch') FROM probe_events

-- refresh_rollups --
-- Recompute the logged minutes and hours that have ended (plain PostgreSQL; a no-op on
-- TimescaleDB, whose policies refresh its continuous aggregates).
SELECT dockping_refresh_rollups()

-- refresh_every_rollup --
-- Recompute every logged minute and hour, the current ones too (plain PostgreSQL).
SELECT dockping_refresh_rollups('infinity')

-- refresh_probe_minutes --
-- Refresh the whole minute continuous aggregate (TimescaleDB, outside any transaction).
CALL refresh_continuous_aggregate('probe_minute', NULL, NULL, force => true)

-- refresh_probe_hours --
-- Refresh the whole hour continuous aggregate (TimescaleDB, outside any transaction).
CALL refresh_continuous_aggregate('probe_hour', NULL, NULL, force => true)

-- count_rollups --
-- Rows of the minute and hour rollups.
SELECT (SELECT count(*) FROM probe_minute), (SELECT count(*) FROM probe_hour)

-- delete_network_states --
-- Forget every folded network detachment (before a full rebuild).
DELETE FROM network_state

-- rebuild_network_states --
-- Fold every stored network_disconnect event into network_state.
INSERT INTO network_state (container_key, network, detached_at)
SELECT container_key, detail ->> 'network', max(time)
FROM container_events
WHERE action = 'network_disconnect' AND detail ->> 'network' IS NOT NULL
GROUP BY 1, 2

-- delete_target_details --
-- Forget the folded HTTP(S) detail of every target (before a full rebuild).
DELETE FROM target_detail

-- rebuild_target_details --
-- Fold the stored HTTP(S) changes into target_detail, as append_probe_details does: the
-- newest row's status, the newest certificate expiry known.
INSERT INTO target_detail (target_id, changed_at, http_status, tls_not_after)
SELECT DISTINCT ON (d.target_id) d.target_id, d.time, d.http_status,
       (SELECT c.tls_not_after FROM probe_details c
        WHERE c.target_id = d.target_id AND c.tls_not_after IS NOT NULL
        ORDER BY c.time DESC LIMIT 1)
FROM probe_details d
ORDER BY d.target_id, d.time DESC
-- delete_agent_inventories --
-- Forget every folded inventory and the absences it made (before a full rebuild).
DELETE FROM container_absence;
DELETE FROM agent_inventory

-- rebuild_agent_inventories --
-- Fold every stored inventory into agent_inventory: the newest of each agent.
INSERT INTO agent_inventory (agent_id, time, container_keys)
SELECT DISTINCT ON (agent_id) agent_id, time, container_keys
FROM inventories ORDER BY agent_id, time DESC

-- rebuild_absence --
-- The containers missing from their agent's newest inventory, for every agent.
SELECT dockping_refresh_absence(agent_id, NULL) FROM agent_inventory ORDER BY agent_id

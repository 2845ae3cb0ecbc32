-- Every probe, readable: one row per probe event.
CREATE OR REPLACE VIEW probe_history AS
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

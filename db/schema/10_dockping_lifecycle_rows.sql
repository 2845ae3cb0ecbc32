-- What address_lifecycle holds for some containers' targets (keys null: every container's):
-- what the status takes from the container, its network, its agent's inventory and the probe
-- window, as stored.
CREATE OR REPLACE FUNCTION dockping_lifecycle_rows(keys integer[])
RETURNS SETOF address_lifecycle LANGUAGE sql STABLE AS $$
    SELECT t.target_id, cs.action, cs.action_at, c.agent_id, ns.detached_at,
           ab.container_key IS NOT NULL, dockping_probe_window(t.interval_ms, t.timeout_ms)
    FROM targets t
    JOIN containers c USING (container_key)
    LEFT JOIN container_state cs USING (container_key)
    LEFT JOIN network_state ns ON ns.container_key = t.container_key AND ns.network = t.network
    LEFT JOIN container_absence ab ON ab.container_key = t.container_key
    WHERE keys IS NULL OR t.container_key = ANY(keys)
$$;

-- Each agent as the statuses of its targets need it: silent or not, since when, and the time
-- of its newest inventory.
CREATE OR REPLACE FUNCTION dockping_agent_view(as_of timestamptz, silent_after interval)
RETURNS TABLE (agent_id integer, agent_silent boolean, silent_since timestamptz,
               inventory_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT a.agent_id,
           dockping_agent_silent(s.last_heartbeat_at, a.first_seen_at, as_of, silent_after),
           dockping_agent_stale_since(s.last_heartbeat_at, a.first_seen_at, silent_after),
           i.time
    FROM agents a
    LEFT JOIN agent_state s USING (agent_id)
    LEFT JOIN agent_inventory i USING (agent_id)
$$;

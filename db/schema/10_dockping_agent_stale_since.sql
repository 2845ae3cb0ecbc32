-- When an agent's targets went stale for its silence: silent_after past its last sign.
CREATE OR REPLACE FUNCTION dockping_agent_stale_since(
    last_heartbeat_at timestamptz, first_seen_at timestamptz, silent_after interval)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(last_heartbeat_at, first_seen_at) + silent_after
$$;

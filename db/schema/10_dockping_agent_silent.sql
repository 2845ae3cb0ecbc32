-- Whether an agent is silent: no heartbeat (or, before its first, no sign of it at all) for
-- silent_after. The page's banner and the status of the agent's targets both ask this.
CREATE OR REPLACE FUNCTION dockping_agent_silent(
    last_heartbeat_at timestamptz, first_seen_at timestamptz, as_of timestamptz,
    silent_after interval) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(last_heartbeat_at, first_seen_at) < as_of - silent_after
$$;

-- The status of a target, from its container's lifecycle (action, action_at, detached_at:
-- when the container last left the target's network, absent: missing from its agent's newest
-- inventory, taken at inventory_at), its state (last_probe_at, latency_us, fresh_until) and
-- its agent (agent_silent), as of a time.
--   gone:    the container was destroyed; or, while not stopped, it left the target's network
--            or was missing from an inventory, after its last probe and lifecycle event;
--   stale:   its agent is silent, or its last probe is older than fresh_until;
--   stopped: the container stopped (stop, die, kill, oom) after the last probe;
--   unknown: never probed;
--   down:    the container is paused, or the last probe failed;
--   up:      the last probe succeeded.
CREATE OR REPLACE FUNCTION dockping_target_status(
    action text, action_at timestamptz, detached_at timestamptz, absent boolean,
    inventory_at timestamptz, last_probe_at timestamptz, latency_us integer,
    fresh_until timestamptz, agent_silent boolean, as_of timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN action = 'destroy' THEN 'gone'
        -- Missing from an inventory (which lists every container the engine holds) newer than
        -- its last probe and lifecycle event: removed while no agent watched, whatever its
        -- last state.
        WHEN absent AND inventory_at > coalesce(last_probe_at, '-infinity')
             AND inventory_at > coalesce(action_at, '-infinity') THEN 'gone'
        WHEN NOT coalesce(dockping_stops(action), false)
             AND detached_at >= coalesce(last_probe_at, '-infinity') THEN 'gone'
        WHEN agent_silent THEN 'stale'
        WHEN dockping_stops(action) AND (last_probe_at IS NULL OR action_at >= last_probe_at)
            THEN 'stopped'
        WHEN last_probe_at IS NULL THEN 'unknown'
        WHEN fresh_until < as_of THEN 'stale'
        -- A paused container serves nothing, though its kernel may still complete a few
        -- handshakes: it is down from the pause event on, not only once probes time out.
        WHEN action = 'pause' THEN 'down'
        WHEN latency_us >= 0 THEN 'up'
        ELSE 'down'
    END
$$;

-- Since when a target has had its status: the event that made it (the destroy, the
-- detachment, the inventory, the stop, the pause), the moment it went stale, or the start of
-- its run of probes of the same outcome.
CREATE OR REPLACE FUNCTION dockping_status_since(
    status text, action text, action_at timestamptz, detached_at timestamptz, absent boolean,
    inventory_at timestamptz, latency_us integer, run_since timestamptz,
    stale_since timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN status = 'gone' AND action = 'destroy' THEN action_at
        WHEN status = 'gone' THEN least(detached_at, CASE WHEN absent THEN inventory_at END)
        WHEN status = 'stale' THEN stale_since
        WHEN status = 'stopped' THEN action_at
        WHEN status = 'down' AND action = 'pause'
             AND (latency_us >= 0 OR run_since < action_at) THEN action_at
        ELSE run_since
    END
$$;

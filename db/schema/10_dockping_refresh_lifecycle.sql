-- Bring address_lifecycle up to date for some containers' targets (keys null: all), writing
-- only the rows that change, as dockping_refresh_listing does for address_listing.
CREATE OR REPLACE FUNCTION dockping_refresh_lifecycle(keys integer[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE address_lifecycle l SET action = n.action, action_at = n.action_at,
        agent_id = n.agent_id, detached_at = n.detached_at, absent = n.absent,
        probe_window = n.probe_window
    FROM dockping_lifecycle_rows(keys) n
    WHERE l.target_id = n.target_id AND l IS DISTINCT FROM n;
    INSERT INTO address_lifecycle SELECT * FROM dockping_lifecycle_rows(keys)
    ON CONFLICT (target_id) DO NOTHING;
END
$$;

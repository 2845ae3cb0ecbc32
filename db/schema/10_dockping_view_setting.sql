-- The settings a session may give the views below (SET dockping.stale_after = '5m'); unset,
-- the defaults of settings.toml (query.stale_after 40s; agent.probe_interval 20s plus
-- agent.probe_timeout 2s; three heartbeats of agent.resync_interval 20s).
CREATE OR REPLACE FUNCTION dockping_view_setting(name text, fallback interval) RETURNS interval
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('dockping.' || name, true), '')::interval, fallback)
$$;

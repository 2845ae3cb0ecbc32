-- A target's probe events older than `before` (all when null), newest first: the events page.
CREATE OR REPLACE FUNCTION dockping_target_events(target integer, before timestamptz, page integer)
RETURNS TABLE ("time" timestamptz, latency_us integer)
LANGUAGE sql STABLE AS $$
    SELECT e.time, e.latency_us
    FROM probe_events e
    WHERE e.target_id = target AND (before IS NULL OR e.time < before)
    ORDER BY e.time DESC
    LIMIT page
$$;

-- A target's probe events older than `before` (all when null), newest first: the events page.
-- Ordered by bucket, then time, which both indexes give (the order is the same).
CREATE OR REPLACE FUNCTION dockping_target_events(target integer, before timestamptz, page integer)
RETURNS TABLE ("time" timestamptz, latency_us integer)
LANGUAGE sql STABLE AS $$
    SELECT e.time, e.latency_us
    FROM probe_events e
    WHERE e.target_id = target
      AND (before IS NULL
           OR (e.time < before AND dockping_bucket(e.time) <= dockping_bucket(before)))
    ORDER BY dockping_bucket(e.time) DESC, e.time DESC
    LIMIT page
$$;

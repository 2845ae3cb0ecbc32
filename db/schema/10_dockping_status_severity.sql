-- How bad a status is, for "the worst of its containers": gone is least (a group is gone
-- only when everything in it is), then up, stopped, unknown, stale, degraded, down.
CREATE OR REPLACE FUNCTION dockping_status_severity(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE status
        WHEN 'gone' THEN 0 WHEN 'up' THEN 1 WHEN 'stopped' THEN 2 WHEN 'unknown' THEN 3
        WHEN 'stale' THEN 4 WHEN 'degraded' THEN 5 WHEN 'down' THEN 6 ELSE 3
    END
$$;

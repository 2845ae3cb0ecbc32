-- The roll-up rule, once: a group's status from how many of its addresses have each status.
-- Gone addresses count for nothing while any other is left; then all up is up, some up is
-- degraded, and with none up a down one makes it down; the rest (stopped, stale, unknown)
-- speak for the group when they are all it has, stale before stopped before unknown.
CREATE OR REPLACE FUNCTION dockping_rollup_status(
    up bigint, down bigint, stopped bigint, stale bigint, unknown bigint, gone bigint
) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN up + down + stopped + stale + unknown = 0
            THEN CASE WHEN gone > 0 THEN 'gone' ELSE 'unknown' END
        WHEN down + stopped + stale + unknown = 0 THEN 'up'
        WHEN up > 0 THEN 'degraded'
        WHEN down > 0 THEN 'down'
        WHEN stale > 0 THEN 'stale'
        WHEN stopped > 0 THEN 'stopped'
        ELSE 'unknown'
    END
$$;

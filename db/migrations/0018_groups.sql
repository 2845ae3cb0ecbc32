-- Containers and projects as groups of addresses: their statuses are roll-ups of the address
-- status, never a second copy of its rule.

-- The status of every address as the one status definition decides it. This view is the only
-- place the roll-ups below read an address status from: point it at another definition and
-- every container, project, status page and badge follows: latest_state's status, which is
-- dockping_target_status (migration 13).
CREATE VIEW dockping_address_status AS
SELECT l.target_id,
       t.container_key,
       l.status,
       l.status_since
FROM targets t
JOIN latest_state l USING (target_id);

-- The roll-up rule, once: a group's status from how many of its addresses have each status.
-- Gone addresses count for nothing while any other is left; then all up is up, some up is
-- degraded, and with none up a down one makes it down; the rest (stopped, stale, unknown)
-- speak for the group when they are all it has, stale before stopped before unknown.
CREATE FUNCTION dockping_rollup_status(
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

-- How bad a status is, for "the worst of its containers": gone is least (a group is gone
-- only when everything in it is), then up, stopped, unknown, stale, degraded, down.
CREATE FUNCTION dockping_status_severity(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE status
        WHEN 'gone' THEN 0 WHEN 'up' THEN 1 WHEN 'stopped' THEN 2 WHEN 'unknown' THEN 3
        WHEN 'stale' THEN 4 WHEN 'degraded' THEN 5 WHEN 'down' THEN 6 ELSE 3
    END
$$;

-- The worst of some statuses (unknown for none).
CREATE FUNCTION dockping_worst_status(statuses text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(
        (SELECT s FROM unnest(statuses) s ORDER BY dockping_status_severity(s) DESC LIMIT 1),
        'unknown')
$$;

-- The address statuses the roll-ups read, as of each read: never a stored copy, since a
-- status changes with time alone (stale), which no trigger would see.
CREATE VIEW address_rollup AS
SELECT target_id, container_key, status, status_since FROM dockping_address_status;

-- Every container that has addresses, with its roll-up: the one container status, over the
-- address statuses.
CREATE VIEW dockping_container_status AS
SELECT a.container_key,
       dockping_rollup_status(
           count(*) FILTER (WHERE a.status = 'up'),
           count(*) FILTER (WHERE a.status = 'down'),
           count(*) FILTER (WHERE a.status = 'stopped'),
           count(*) FILTER (WHERE a.status = 'stale'),
           count(*) FILTER (WHERE a.status NOT IN ('up', 'down', 'stopped', 'stale', 'gone')),
           count(*) FILTER (WHERE a.status = 'gone')) AS status,
       (count(*) FILTER (WHERE a.status = 'up'))::integer AS addresses_up,
       (count(*) FILTER (WHERE a.status <> 'gone'))::integer AS addresses_total,
       max(a.status_since) FILTER (WHERE a.status <> 'gone') AS status_since
FROM address_rollup a
GROUP BY a.container_key;

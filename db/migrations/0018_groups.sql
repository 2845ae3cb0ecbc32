-- Containers and projects as groups of addresses: their statuses are roll-ups of the address
-- status, never a second copy of its rule.

-- The status of every address as the one status definition decides it. This view is the only
-- place the roll-ups below read an address status from: point it at another definition and
-- every container, project, status page and badge follows. Today that is latest_state's
-- status, with `gone` for an address latest_state marks removed.
CREATE VIEW dockping_address_status AS
SELECT l.target_id,
       t.container_key,
       CASE WHEN l.removed THEN 'gone' ELSE l.status END AS status,
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

-- The address status, stored, for the reads that roll up every container (a project's
-- status, the container listing filtered by status, badges): one narrow row per address
-- instead of every address's status computed again through latest_state. It is kept in the
-- same transaction as the projections it comes from, by the triggers below, refreshed only
-- for the containers of changed rows (see dockping_rollup_states_folded for probe batches).
-- Statuses that change with time alone (stale) are not refreshed by time. One row per
-- address, as address_lifecycle: a batch adding a target writes a row of its own, so that a
-- rebuild never waits for it.
CREATE TABLE address_rollup (
    target_id       integer PRIMARY KEY REFERENCES targets ON DELETE CASCADE,
    container_key   integer NOT NULL,
    status          text NOT NULL,
    status_since    timestamptz
);
CREATE INDEX address_rollup_by_container ON address_rollup (container_key, status);

-- Every container that has addresses, with its roll-up: the one container status, over the
-- stored address statuses.
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

-- Bring some containers' rows (null: every container's) up to date from
-- dockping_address_status, as dockping_refresh_listing does its own: update the rows that
-- differ, add the missing ones, so that only rows that change are written or locked.
CREATE FUNCTION dockping_refresh_rollup(keys integer[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF keys IS NULL THEN
        UPDATE address_rollup r SET status = n.status, status_since = n.status_since
        FROM dockping_address_status n
        WHERE r.target_id = n.target_id
          AND (r.status, r.status_since) IS DISTINCT FROM (n.status, n.status_since);
        INSERT INTO address_rollup
        SELECT n.target_id, n.container_key, n.status, n.status_since
        FROM dockping_address_status n
        WHERE NOT EXISTS (SELECT 1 FROM address_rollup r WHERE r.target_id = n.target_id)
        ORDER BY n.target_id
        ON CONFLICT (target_id) DO NOTHING;
    ELSIF cardinality(keys) > 0 THEN
        UPDATE address_rollup r SET status = n.status, status_since = n.status_since
        FROM dockping_address_status n
        WHERE n.container_key = ANY(keys) AND r.target_id = n.target_id
          AND (r.status, r.status_since) IS DISTINCT FROM (n.status, n.status_since);
        INSERT INTO address_rollup
        SELECT n.target_id, n.container_key, n.status, n.status_since
        FROM dockping_address_status n
        WHERE n.container_key = ANY(keys)
          AND NOT EXISTS (SELECT 1 FROM address_rollup r WHERE r.target_id = n.target_id)
        ORDER BY n.target_id
        ON CONFLICT (target_id) DO NOTHING;
    END IF;
END
$$;

-- Rows of tables keyed by container (container_state, network_state, targets) changed.
CREATE FUNCTION dockping_rollup_containers_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dockping_refresh_rollup(ARRAY(SELECT DISTINCT container_key FROM changed));
    RETURN NULL;
END
$$;

-- Rows of target_state were added or removed: their containers' counts change.
CREATE FUNCTION dockping_rollup_states_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dockping_refresh_rollup(ARRAY(
        SELECT DISTINCT t.container_key FROM changed c JOIN targets t USING (target_id)));
    RETURN NULL;
END
$$;

-- Rows of target_state were folded. An address that is up or down stays so unless the fold
-- moved its status_since; one in any other status (stopped, stale, unknown...) may leave it
-- with any probe, as a probe newer than a stop does. In a steady fleet neither happens, and
-- a batch refreshes nothing.
CREATE FUNCTION dockping_rollup_states_folded() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dockping_refresh_rollup(ARRAY(
        SELECT DISTINCT t.container_key
        FROM folded n
        JOIN before o USING (target_id)
        JOIN targets t USING (target_id)
        LEFT JOIN address_rollup r ON r.target_id = n.target_id
        WHERE n.status_since IS DISTINCT FROM o.status_since
           OR r.status IS NULL OR r.status NOT IN ('up', 'down')));
    RETURN NULL;
END
$$;

CREATE FUNCTION dockping_rollup_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dockping_refresh_rollup(NULL);
    RETURN NULL;
END
$$;

CREATE TRIGGER rollup_target_state_insert AFTER INSERT ON target_state
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_rollup_states_changed();
CREATE TRIGGER rollup_target_state_update AFTER UPDATE ON target_state
    REFERENCING OLD TABLE AS before NEW TABLE AS folded
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_rollup_states_folded();
CREATE TRIGGER rollup_target_state_delete AFTER DELETE ON target_state
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_rollup_states_changed();
CREATE TRIGGER rollup_target_state_truncate AFTER TRUNCATE ON target_state
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_rollup_truncated();
CREATE TRIGGER rollup_targets_insert AFTER INSERT ON targets
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_rollup_containers_changed();
CREATE TRIGGER rollup_container_state_insert AFTER INSERT ON container_state
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_rollup_containers_changed();
CREATE TRIGGER rollup_container_state_update AFTER UPDATE ON container_state
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_rollup_containers_changed();
CREATE TRIGGER rollup_container_state_delete AFTER DELETE ON container_state
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_rollup_containers_changed();
CREATE TRIGGER rollup_container_state_truncate AFTER TRUNCATE ON container_state
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_rollup_truncated();
CREATE TRIGGER rollup_network_state_insert AFTER INSERT ON network_state
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_rollup_containers_changed();
CREATE TRIGGER rollup_network_state_update AFTER UPDATE ON network_state
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_rollup_containers_changed();
CREATE TRIGGER rollup_network_state_delete AFTER DELETE ON network_state
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_rollup_containers_changed();
CREATE TRIGGER rollup_network_state_truncate AFTER TRUNCATE ON network_state
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_rollup_truncated();

-- The container listing's name order, a project's containers, the listing by status.
CREATE INDEX containers_by_name ON containers (lower(name), container_key);
CREATE INDEX containers_by_project ON containers (compose_project, compose_service);

SELECT dockping_refresh_rollup(NULL);

-- The address listing's own tables: per target, what the /addresses orders, filters and rows
-- need from the dimension and lifecycle tables, kept by triggers on those tables.
--
-- latest_state joins seven tables, so a page sorted or filtered through it computes every
-- row before keeping 50. Here a page reads these two tables and target_state only, and the
-- name order walks an index. Only tables written on dimension misses and lifecycle events
-- carry triggers (targets, containers, container_state, network_state): the per-probe
-- writes (probe_events, target_state, the rollup log) cost what they cost before.

-- What a target shows and is ordered and searched by, from the dimension tables.
CREATE TABLE address_listing (
    target_id       integer PRIMARY KEY REFERENCES targets ON DELETE CASCADE,
    container_key   integer NOT NULL,
    agent           text NOT NULL,
    container_id    text NOT NULL,
    container_name  text NOT NULL,
    -- lower(container_name): the name order. With image_key and ip (lower case already) it
    -- makes the text filter a LIKE of lower(q): what ILIKE does, without lower() per row.
    name_key        text NOT NULL,
    image           text NOT NULL,
    image_key       text NOT NULL,     -- lower(image)
    compose_project text NOT NULL,
    network         text NOT NULL,
    ip              text NOT NULL,     -- host(ip), as latest_state shows it
    port            integer,
    port_key        integer NOT NULL,  -- coalesce(port, 0): the name order's last key
    protocol        text NOT NULL
);

CREATE INDEX address_listing_by_name ON address_listing (name_key, ip, port_key, target_id);
-- One agent's rows in name order, so that a small agent's page never walks everyone's.
CREATE INDEX address_listing_by_agent ON address_listing (agent, name_key, ip, port_key, target_id);

-- What a target's status and presence take from its container's lifecycle, apart and narrow:
-- the status, ping-time and last-success orders read every row of this table and of
-- target_state, and address_listing only when a text filter asks for it.
CREATE TABLE address_lifecycle (
    target_id       integer PRIMARY KEY REFERENCES targets ON DELETE CASCADE,
    action          text,              -- the container's last lifecycle action (container_state)
    action_at       timestamptz,
    -- The target is gone from the listing unless probed after this: 'infinity' once the
    -- container is destroyed, the network's detachment while it is not stopped, else null.
    gone_at         timestamptz
);

-- The rows of both tables as the tables they come from say, for some containers' targets
-- (keys null: every container's).
CREATE FUNCTION dockping_listing_rows(keys integer[])
RETURNS SETOF address_listing LANGUAGE sql STABLE AS $$
    SELECT t.target_id, t.container_key, a.name, c.container_id, c.name, lower(c.name), c.image,
           lower(c.image), c.compose_project, t.network, host(t.ip), t.port,
           coalesce(t.port, 0), t.protocol
    FROM targets t
    JOIN containers c USING (container_key)
    JOIN agents a USING (agent_id)
    WHERE keys IS NULL OR t.container_key = ANY(keys)
$$;

CREATE FUNCTION dockping_lifecycle_rows(keys integer[])
RETURNS SETOF address_lifecycle LANGUAGE sql STABLE AS $$
    SELECT t.target_id, cs.action, cs.action_at,
           CASE
               WHEN cs.action = 'destroy' THEN 'infinity'::timestamptz
               -- A stopping container leaves its networks too: it is `stopped`, not gone.
               WHEN cs.action IN ('stop', 'die', 'kill', 'oom') THEN NULL
               ELSE ns.detached_at
           END
    FROM targets t
    LEFT JOIN container_state cs USING (container_key)
    LEFT JOIN network_state ns ON ns.container_key = t.container_key AND ns.network = t.network
    WHERE keys IS NULL OR t.container_key = ANY(keys)
$$;

-- Bring the rows of some containers' targets up to date: update the rows that differ, add
-- the missing ones. Only rows that change are written or locked, so this never waits for,
-- nor makes wait, a writer of other rows. Batches of one agent (and so of one container)
-- run one after the other (ingest's lock_agent); `dockping rebuild`, the other writer of
-- container_state and network_state, refreshes address_lifecycle only, and only the rows
-- whose values it changes, while a batch adding a target writes only that target's new
-- rows: neither waits for a row the other holds, whatever order their tables are locked in.
CREATE FUNCTION dockping_refresh_listing(keys integer[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE address_listing l SET
        container_key = n.container_key, agent = n.agent, container_id = n.container_id,
        container_name = n.container_name, name_key = n.name_key, image = n.image,
        image_key = n.image_key, compose_project = n.compose_project, network = n.network,
        ip = n.ip, port = n.port, port_key = n.port_key, protocol = n.protocol
    FROM dockping_listing_rows(keys) n
    WHERE l.target_id = n.target_id AND l IS DISTINCT FROM n;
    INSERT INTO address_listing SELECT * FROM dockping_listing_rows(keys)
    ON CONFLICT (target_id) DO NOTHING;
END
$$;

CREATE FUNCTION dockping_refresh_lifecycle(keys integer[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE address_lifecycle l SET action = n.action, action_at = n.action_at, gone_at = n.gone_at
    FROM dockping_lifecycle_rows(keys) n
    WHERE l.target_id = n.target_id AND l IS DISTINCT FROM n;
    INSERT INTO address_lifecycle SELECT * FROM dockping_lifecycle_rows(keys)
    ON CONFLICT (target_id) DO NOTHING;
END
$$;

-- The statement-level triggers below: the changed rows are in the transition table
-- `changed`, and each carries a container_key. A new target gets both rows; a container's
-- new name or image changes address_listing; its lifecycle and networks address_lifecycle.
CREATE FUNCTION dockping_targets_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dockping_refresh_listing(ARRAY(SELECT DISTINCT container_key FROM changed));
    PERFORM dockping_refresh_lifecycle(ARRAY(SELECT DISTINCT container_key FROM changed));
    RETURN NULL;
END
$$;

CREATE FUNCTION dockping_containers_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dockping_refresh_listing(ARRAY(SELECT DISTINCT container_key FROM changed));
    RETURN NULL;
END
$$;

CREATE FUNCTION dockping_lifecycle_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dockping_refresh_lifecycle(ARRAY(SELECT DISTINCT container_key FROM changed));
    RETURN NULL;
END
$$;

CREATE FUNCTION dockping_lifecycle_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dockping_refresh_lifecycle(NULL);
    RETURN NULL;
END
$$;

CREATE TRIGGER listing_targets_insert AFTER INSERT ON targets
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_targets_changed();
CREATE TRIGGER listing_targets_update AFTER UPDATE ON targets
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_targets_changed();
CREATE TRIGGER listing_containers_update AFTER UPDATE ON containers
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_containers_changed();
CREATE TRIGGER listing_container_state_insert AFTER INSERT ON container_state
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_changed();
CREATE TRIGGER listing_container_state_update AFTER UPDATE ON container_state
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_changed();
CREATE TRIGGER listing_container_state_delete AFTER DELETE ON container_state
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_changed();
CREATE TRIGGER listing_container_state_truncate AFTER TRUNCATE ON container_state
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_truncated();
CREATE TRIGGER listing_network_state_insert AFTER INSERT ON network_state
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_changed();
CREATE TRIGGER listing_network_state_update AFTER UPDATE ON network_state
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_changed();
CREATE TRIGGER listing_network_state_delete AFTER DELETE ON network_state
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_changed();
CREATE TRIGGER listing_network_state_truncate AFTER TRUNCATE ON network_state
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_truncated();

SELECT dockping_refresh_listing(NULL);
SELECT dockping_refresh_lifecycle(NULL);

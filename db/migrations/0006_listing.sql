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

-- Filled from what is stored, by the functions of db/schema/ (after they exist).
-- after schema --
SELECT dockping_refresh_listing(NULL);
SELECT dockping_refresh_lifecycle(NULL);

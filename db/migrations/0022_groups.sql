-- The grouped views' own table: per container with addresses, what /containers orders,
-- filters and shows from the dimension tables, kept by triggers on those tables.
--
-- The container listing walked `containers` in lower(name) order through no index, and rolled
-- each container up from latest_state, which computes every address (seven tables) before
-- keeping a container's few. Now a page walks an index of this table, and each row's roll-up
-- reads that container's addresses alone from the narrow tables the address listing reads
-- (address_lifecycle, target_state, the agent). As for address_listing, only tables written on
-- dimension misses carry triggers (targets, containers): the per-probe writes cost what they
-- cost before. A container without addresses has no row, as it has no roll-up.
CREATE TABLE container_listing (
    container_key   integer PRIMARY KEY REFERENCES containers ON DELETE CASCADE,
    agent           text NOT NULL,
    container_id    text NOT NULL,
    name            text NOT NULL,
    name_key        text NOT NULL,     -- lower(name): the name order and the text filter
    image           text NOT NULL,
    image_key       text NOT NULL,     -- lower(image)
    compose_project text NOT NULL,
    compose_service text NOT NULL
);

-- The keyset orders: every container, one agent's, one project's by name; one project's by
-- service (its status page and services).
CREATE INDEX container_listing_by_name ON container_listing (name_key, container_key);
CREATE INDEX container_listing_by_agent ON container_listing (agent, name_key, container_key);
CREATE INDEX container_listing_by_project
    ON container_listing (compose_project, name_key, container_key);
CREATE INDEX container_listing_by_service
    ON container_listing (compose_project, compose_service, name_key, container_key);

INSERT INTO container_listing
SELECT c.container_key, a.name, c.container_id, c.name, lower(c.name), c.image, lower(c.image),
       c.compose_project, c.compose_service
FROM containers c
JOIN agents a USING (agent_id)
WHERE EXISTS (SELECT FROM targets t WHERE t.container_key = c.container_key);

-- schema: below this line moves to db/schema/

-- The rows of container_listing as the dimension tables say, for some containers (keys null:
-- every container).
CREATE OR REPLACE FUNCTION dockping_container_listing_rows(keys integer[])
RETURNS SETOF container_listing LANGUAGE sql STABLE AS $$
    SELECT c.container_key, a.name, c.container_id, c.name, lower(c.name), c.image,
           lower(c.image), c.compose_project, c.compose_service
    FROM containers c
    JOIN agents a USING (agent_id)
    WHERE (keys IS NULL OR c.container_key = ANY(keys))
      AND EXISTS (SELECT FROM targets t WHERE t.container_key = c.container_key)
$$;

-- Bring some containers' rows up to date, writing (and locking) only the rows that change, as
-- dockping_refresh_listing does for address_listing and for the same reasons.
CREATE OR REPLACE FUNCTION dockping_refresh_container_listing(keys integer[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE container_listing l SET
        agent = n.agent, container_id = n.container_id, name = n.name, name_key = n.name_key,
        image = n.image, image_key = n.image_key, compose_project = n.compose_project,
        compose_service = n.compose_service
    FROM dockping_container_listing_rows(keys) n
    WHERE l.container_key = n.container_key AND l IS DISTINCT FROM n;
    INSERT INTO container_listing SELECT * FROM dockping_container_listing_rows(keys)
    ON CONFLICT (container_key) DO NOTHING;
END
$$;

-- Statement-level, like the address listing's: a container's first target adds its row, a
-- new name, image or project changes it. The changed rows are in `changed`.
CREATE OR REPLACE FUNCTION dockping_container_listing_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dockping_refresh_container_listing(
        ARRAY(SELECT DISTINCT container_key FROM changed));
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS container_listing_targets_insert ON targets;
CREATE TRIGGER container_listing_targets_insert AFTER INSERT ON targets
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_container_listing_changed();
DROP TRIGGER IF EXISTS container_listing_targets_update ON targets;
CREATE TRIGGER container_listing_targets_update AFTER UPDATE ON targets
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_container_listing_changed();
DROP TRIGGER IF EXISTS container_listing_containers_update ON containers;
CREATE TRIGGER container_listing_containers_update AFTER UPDATE ON containers
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_container_listing_changed();

-- The status of every address as the one status definition decides it (dockping_target_status,
-- as of now, with the session's freshness settings, as latest_state has it), computed from the
-- narrow tables the address listing reads: the lifecycle row, the state row and the agent.
-- latest_state computes the same from seven tables for every address, so a roll-up of one
-- container through it cost a read of them all.
CREATE OR REPLACE VIEW dockping_address_status AS
SELECT x.target_id,
       x.container_key,
       x.status,
       dockping_status_since(x.status, x.action, x.action_at, x.detached_at, x.absent,
                             x.inventory_at, x.latency_us, x.run_since,
                             CASE WHEN x.agent_silent THEN x.silent_since ELSE x.fresh_until END)
           AS status_since
FROM (
    SELECT t.target_id, t.container_key, lc.action, lc.action_at, lc.detached_at, lc.absent,
           g.inventory_at, g.agent_silent, g.silent_since, s.latency_us,
           s.status_since AS run_since, f.fresh_until, st.status
    FROM targets t
    JOIN address_lifecycle lc USING (target_id)
    -- The session's settings, read once (OFFSET 0), not once a row.
    CROSS JOIN (
        SELECT dockping_view_setting('stale_after', interval '40 seconds') AS stale_after,
               dockping_view_setting('default_window', interval '22 seconds') AS default_window
        OFFSET 0
    ) v
    LEFT JOIN target_state s USING (target_id)
    LEFT JOIN dockping_agent_view(
        now(), dockping_view_setting('silent_after', interval '60 seconds')) g
        ON g.agent_id = lc.agent_id
    CROSS JOIN LATERAL (
        SELECT dockping_fresh_until(s.last_probe_at, lc.probe_window, v.default_window,
                                    v.stale_after) AS fresh_until
    ) f
    -- Once a row (OFFSET 0): the roll-ups read a status in several aggregates, and a status
    -- inlined into each would be decided that many times.
    CROSS JOIN LATERAL (
        SELECT dockping_target_status(
                   lc.action, lc.action_at, lc.detached_at, lc.absent, g.inventory_at,
                   s.last_probe_at, s.latency_us, f.fresh_until, g.agent_silent, now()) AS status
        OFFSET 0
    ) st
) x;

-- The grouped views' own table: per container with addresses, what /containers orders,
-- filters and shows from the dimension tables, kept by triggers on those tables.
--
-- A page walks an index of this table instead of `containers` in lower(name) order, and each
-- row's roll-up reads that container's addresses alone from the narrow tables the address
-- listing reads (address_lifecycle, target_state, the agent). As for address_listing, only tables written on
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

-- Filled from what is stored, by the function of db/schema/ (after it exists).
-- after schema --
SELECT dockping_refresh_container_listing(NULL);

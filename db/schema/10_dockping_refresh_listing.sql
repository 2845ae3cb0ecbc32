-- Bring the rows of some containers' targets up to date: update the rows that differ, add
-- the missing ones. Only rows that change are written or locked, so this never waits for,
-- nor makes wait, a writer of other rows. Batches of one agent (and so of one container)
-- run one after the other (ingest's lock_agent); `dockping rebuild`, the other writer of
-- container_state and network_state, refreshes address_lifecycle only, and only the rows
-- whose values it changes, while a batch adding a target writes only that target's new
-- rows: neither waits for a row the other holds, whatever order their tables are locked in.
CREATE OR REPLACE FUNCTION dockping_refresh_listing(keys integer[]) RETURNS void
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

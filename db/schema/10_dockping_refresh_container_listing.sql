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

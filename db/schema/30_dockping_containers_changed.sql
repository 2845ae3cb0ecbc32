-- A container's new name or image changes its targets' address_listing rows.
CREATE OR REPLACE FUNCTION dockping_containers_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dockping_refresh_listing(ARRAY(SELECT DISTINCT container_key FROM changed));
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER listing_containers_update AFTER UPDATE ON containers
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_containers_changed();

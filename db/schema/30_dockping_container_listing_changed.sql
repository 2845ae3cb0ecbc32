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

CREATE OR REPLACE TRIGGER container_listing_targets_insert AFTER INSERT ON targets
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_container_listing_changed();

CREATE OR REPLACE TRIGGER container_listing_targets_update AFTER UPDATE ON targets
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_container_listing_changed();

CREATE OR REPLACE TRIGGER container_listing_containers_update AFTER UPDATE ON containers
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_container_listing_changed();

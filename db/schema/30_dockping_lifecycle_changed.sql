-- A container's lifecycle, networks or absence changes its targets' address_lifecycle rows.
CREATE OR REPLACE FUNCTION dockping_lifecycle_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dockping_refresh_lifecycle(ARRAY(SELECT DISTINCT container_key FROM changed));
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER listing_container_absence_delete AFTER DELETE ON container_absence
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_changed();

CREATE OR REPLACE TRIGGER listing_container_absence_insert AFTER INSERT ON container_absence
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_changed();

CREATE OR REPLACE TRIGGER listing_container_state_delete AFTER DELETE ON container_state
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_changed();

CREATE OR REPLACE TRIGGER listing_container_state_insert AFTER INSERT ON container_state
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_changed();

CREATE OR REPLACE TRIGGER listing_container_state_update AFTER UPDATE ON container_state
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_changed();

CREATE OR REPLACE TRIGGER listing_network_state_delete AFTER DELETE ON network_state
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_changed();

CREATE OR REPLACE TRIGGER listing_network_state_insert AFTER INSERT ON network_state
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_changed();

CREATE OR REPLACE TRIGGER listing_network_state_update AFTER UPDATE ON network_state
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_changed();

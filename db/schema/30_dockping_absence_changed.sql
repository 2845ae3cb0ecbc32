-- A container first seen, or whose lifecycle changed, may now be (or no longer be) missing.
CREATE OR REPLACE FUNCTION dockping_absence_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dockping_refresh_absence_of(ARRAY(SELECT DISTINCT container_key FROM changed));
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER absence_container_state_delete AFTER DELETE ON container_state
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_absence_changed();

CREATE OR REPLACE TRIGGER absence_container_state_insert AFTER INSERT ON container_state
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_absence_changed();

CREATE OR REPLACE TRIGGER absence_container_state_update AFTER UPDATE ON container_state
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_absence_changed();

CREATE OR REPLACE TRIGGER absence_containers_insert AFTER INSERT ON containers
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_absence_changed();

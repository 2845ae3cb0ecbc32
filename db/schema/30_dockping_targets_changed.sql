-- The statement-level triggers below: the changed rows are in the transition table
-- `changed`, and each carries a container_key. A new target gets both rows; a container's
-- new name or image changes address_listing; its lifecycle and networks address_lifecycle.
CREATE OR REPLACE FUNCTION dockping_targets_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dockping_refresh_listing(ARRAY(SELECT DISTINCT container_key FROM changed));
    PERFORM dockping_refresh_lifecycle(ARRAY(SELECT DISTINCT container_key FROM changed));
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER listing_targets_insert AFTER INSERT ON targets
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_targets_changed();

CREATE OR REPLACE TRIGGER listing_targets_update AFTER UPDATE ON targets
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_targets_changed();

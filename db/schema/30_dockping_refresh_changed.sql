-- What the dimension and lifecycle tables feed is kept by statement-level triggers: the rows
-- a statement changed are in the transition table `changed` (and, for an update, their old
-- versions in `before`), each with a container_key, and the trigger's arguments name what
-- those containers' rows are refreshed in, in order:
--   absence:           container_absence (a container first seen, or whose lifecycle changed,
--                      may now be, or no longer be, missing from its agent's inventory);
--   listing:           address_listing (a new target; a container's new name or image);
--   lifecycle:         address_lifecycle (a new target, its window; a container's lifecycle,
--                      networks or absence);
--   container_listing: container_listing (a container's first target, a new name, image or
--                      project).
-- An update that leaves a row as it was (ingest upserts its dimensions on every batch that
-- names them) changes nothing: only rows whose values differ count, and a statement with none
-- refreshes nothing. So a container's start or first probe costs a few lookups, not a
-- refresh of every table each time.
CREATE OR REPLACE FUNCTION dockping_refresh_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    keys integer[];
    what text;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        keys := ARRAY(SELECT DISTINCT d.container_key
                      FROM (SELECT * FROM changed EXCEPT ALL SELECT * FROM before) AS d);
    ELSE
        keys := ARRAY(SELECT DISTINCT container_key FROM changed);
    END IF;
    IF keys = '{}' THEN
        RETURN NULL;
    END IF;
    FOREACH what IN ARRAY TG_ARGV LOOP
        CASE what
            WHEN 'absence' THEN PERFORM dockping_refresh_absence_of(keys);
            WHEN 'listing' THEN PERFORM dockping_refresh_listing(keys);
            WHEN 'lifecycle' THEN PERFORM dockping_refresh_lifecycle(keys);
            WHEN 'container_listing' THEN PERFORM dockping_refresh_container_listing(keys);
        END CASE;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER refresh_containers_insert AFTER INSERT ON containers
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_refresh_changed('absence');

CREATE OR REPLACE TRIGGER refresh_containers_update AFTER UPDATE ON containers
    REFERENCING OLD TABLE AS before NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_refresh_changed('listing', 'container_listing');

CREATE OR REPLACE TRIGGER refresh_targets_insert AFTER INSERT ON targets
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT
    EXECUTE FUNCTION dockping_refresh_changed('listing', 'lifecycle', 'container_listing');

CREATE OR REPLACE TRIGGER refresh_targets_update AFTER UPDATE ON targets
    REFERENCING OLD TABLE AS before NEW TABLE AS changed
    FOR EACH STATEMENT
    EXECUTE FUNCTION dockping_refresh_changed('listing', 'lifecycle', 'container_listing');

CREATE OR REPLACE TRIGGER refresh_container_state_insert AFTER INSERT ON container_state
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_refresh_changed('absence', 'lifecycle');

CREATE OR REPLACE TRIGGER refresh_container_state_update AFTER UPDATE ON container_state
    REFERENCING OLD TABLE AS before NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_refresh_changed('absence', 'lifecycle');

CREATE OR REPLACE TRIGGER refresh_container_state_delete AFTER DELETE ON container_state
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_refresh_changed('absence', 'lifecycle');

CREATE OR REPLACE TRIGGER refresh_network_state_insert AFTER INSERT ON network_state
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_refresh_changed('lifecycle');

CREATE OR REPLACE TRIGGER refresh_network_state_update AFTER UPDATE ON network_state
    REFERENCING OLD TABLE AS before NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_refresh_changed('lifecycle');

CREATE OR REPLACE TRIGGER refresh_network_state_delete AFTER DELETE ON network_state
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_refresh_changed('lifecycle');

CREATE OR REPLACE TRIGGER refresh_container_absence_insert AFTER INSERT ON container_absence
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_refresh_changed('lifecycle');

CREATE OR REPLACE TRIGGER refresh_container_absence_delete AFTER DELETE ON container_absence
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_refresh_changed('lifecycle');

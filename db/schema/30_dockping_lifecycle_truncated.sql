-- Truncating a table the lifecycle rows come from (as `dockping rebuild` does) refreshes them all.
CREATE OR REPLACE FUNCTION dockping_lifecycle_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dockping_refresh_lifecycle(NULL);
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER listing_container_absence_truncate AFTER TRUNCATE ON container_absence
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_truncated();

CREATE OR REPLACE TRIGGER listing_container_state_truncate AFTER TRUNCATE ON container_state
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_truncated();

CREATE OR REPLACE TRIGGER listing_network_state_truncate AFTER TRUNCATE ON network_state
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_truncated();

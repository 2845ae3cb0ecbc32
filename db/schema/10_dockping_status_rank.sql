-- The order of the status sort: down first, then stale, unknown, up, stopped, gone.
CREATE OR REPLACE FUNCTION dockping_status_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_position(ARRAY['down', 'stale', 'unknown', 'up', 'stopped', 'gone'], status) - 1
$$;

-- Whether a lifecycle action leaves a container not running.
CREATE OR REPLACE FUNCTION dockping_stops(action text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT action IN ('stop', 'die', 'kill', 'oom', 'destroy')
$$;

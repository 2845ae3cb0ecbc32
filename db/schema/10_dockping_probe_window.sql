-- A target's probe window: its interval and timeout, as its agent sent them (null: not sent).
CREATE OR REPLACE FUNCTION dockping_probe_window(interval_ms integer, timeout_ms integer) RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (interval_ms + timeout_ms) * interval '1 millisecond'
$$;

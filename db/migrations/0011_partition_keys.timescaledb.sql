-- The plain-PostgreSQL migration 11 gives each probe_events partition a key of its own; the
-- hypertable keeps its unique (target_id, time) index, and closed chunks are compressed
-- instead. The functions that readers share exist on both backends.

-- The ten-minute bucket of an event's time: how many whole ten minutes after the epoch it
-- is. An integer: in an index entry it fills the 4 bytes that would pad target_id before a
-- timestamp. (On TimescaleDB it is only a filter, like any other.)
CREATE FUNCTION dockping_bucket(t timestamptz) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN floor(date_part('epoch', t - timestamptz '1970-01-01 00:00:00+00') / 600)::integer;

-- A target's probe events older than `before` (all when null), newest first: the events page.
CREATE FUNCTION dockping_target_events(target integer, before timestamptz, page integer)
RETURNS TABLE ("time" timestamptz, latency_us integer)
LANGUAGE sql STABLE AS $$
    SELECT e.time, e.latency_us
    FROM probe_events e
    WHERE e.target_id = target AND (before IS NULL OR e.time < before)
    ORDER BY e.time DESC
    LIMIT page
$$;

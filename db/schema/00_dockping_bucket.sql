-- The ten-minute bucket of an event's time: how many whole ten minutes after the epoch it
-- is. An integer: in an index entry it fills the 4 bytes that would pad target_id before a
-- timestamp, so the unique index of a probe_events partition, (target_id,
-- dockping_bucket(time), time), costs no more than (target_id, time) would (plain
-- PostgreSQL; on TimescaleDB it is only a filter, like any other). Computed in float8 (about
-- 0.1 µs, against 0.25 in numeric): rounding may move a time a microsecond from a bucket's
-- bound across it, but it never breaks the order, which is all that readers rely on (a later
-- time is never in an earlier bucket). Indexes depend on it: applied before the migrations.
CREATE OR REPLACE FUNCTION dockping_bucket(t timestamptz) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN floor(date_part('epoch', t - timestamptz '1970-01-01 00:00:00+00') / 600)::integer;

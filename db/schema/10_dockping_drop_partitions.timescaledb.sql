-- Expire the event tables' chunks and the rollups' chunks together, whole.
CREATE OR REPLACE FUNCTION dockping_drop_partitions(cutoff timestamptz)
RETURNS integer LANGUAGE sql AS $$
    SELECT (SELECT count(*) FROM drop_chunks('probe_events', older_than => cutoff))::integer
         + (SELECT count(*) FROM drop_chunks('container_events', older_than => cutoff))::integer
         + (SELECT count(*) FROM drop_chunks('heartbeats', older_than => cutoff))::integer
         + (SELECT count(*) FROM drop_chunks('probe_minute', older_than => cutoff))::integer
         + (SELECT count(*) FROM drop_chunks('probe_hour', older_than => cutoff))::integer
         + (SELECT count(*) FROM drop_chunks('inventories', older_than => cutoff))::integer
         + (SELECT count(*) FROM drop_chunks('probe_details', older_than => cutoff))::integer
$$;

-- Chunk width, compression and retention of the event tables and the rollups, from the
-- storage settings; called at every start of ingest.
CREATE OR REPLACE FUNCTION dockping_configure_storage(partition_interval interval,
                                                      compress_after interval,
                                                      retention interval)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    tbl text;
BEGIN
    PERFORM set_chunk_time_interval('probe_events', partition_interval);
    PERFORM set_chunk_time_interval('probe_details', partition_interval);
    PERFORM set_chunk_time_interval('probe_minute', partition_interval);
    PERFORM set_chunk_time_interval('probe_hour', partition_interval);
    FOREACH tbl IN ARRAY ARRAY['probe_events', 'probe_details', 'container_events', 'heartbeats'] LOOP
        PERFORM remove_compression_policy(tbl, if_exists => true);
        PERFORM add_compression_policy(tbl, compress_after => compress_after);
        PERFORM remove_retention_policy(tbl, if_exists => true);
        PERFORM add_retention_policy(tbl, drop_after => retention);
    END LOOP;
    FOREACH tbl IN ARRAY ARRAY['probe_minute', 'probe_hour'] LOOP
        PERFORM remove_retention_policy(tbl, if_exists => true);
        PERFORM add_retention_policy(tbl, drop_after => retention);
        PERFORM remove_continuous_aggregate_policy(tbl, if_exists => true);
    END LOOP;
    -- start_offset NULL: late events of any age are folded in at the next refresh.
    PERFORM add_continuous_aggregate_policy('probe_minute', start_offset => NULL,
                                            end_offset => interval '1 minute',
                                            schedule_interval => interval '1 minute');
    PERFORM add_continuous_aggregate_policy('probe_hour', start_offset => NULL,
                                            end_offset => interval '1 hour',
                                            schedule_interval => interval '10 minutes');
END $$;

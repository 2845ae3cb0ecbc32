-- Storage settings: partitions are made by ingest per partition_interval, and expired
-- by dockping_drop_partitions(); compression exists only on TimescaleDB.
CREATE OR REPLACE FUNCTION dockping_configure_storage(partition_interval interval, compress_after interval,
                                           retention interval)
RETURNS void LANGUAGE sql AS $$ SELECT $$;

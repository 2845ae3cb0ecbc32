-- The address statuses the roll-ups read, as of each read: never a stored copy, since a
-- status changes with time alone (stale), which no trigger would see.
CREATE OR REPLACE VIEW address_rollup AS
SELECT target_id, container_key, status, status_since FROM dockping_address_status;

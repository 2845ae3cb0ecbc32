-- create_incoming --
-- A per-connection temporary table for the COPY path, emptied at each commit.
CREATE TEMP TABLE IF NOT EXISTS incoming_probes (
    time timestamptz NOT NULL, target_id integer NOT NULL, latency_us integer NOT NULL
) ON COMMIT DELETE ROWS

-- copy_incoming --
-- Fill the temporary table with one batch.
COPY incoming_probes (time, target_id, latency_us) FROM STDIN (FORMAT BINARY)

-- make_targets --
-- The benchmark's targets, made once before the timing: ids 1..n.
WITH a AS (INSERT INTO agents (name) VALUES ('bench') RETURNING agent_id),
c AS (INSERT INTO containers (agent_id, container_id)
      SELECT agent_id, 'c' || i FROM a, generate_series(1, %(n)s) i RETURNING container_key)
INSERT INTO targets (container_key, ip, port, protocol)
SELECT container_key, '10.0.0.1', 80, 'tcp' FROM c ORDER BY container_key

-- insert_only --
-- The de-duplicating insert alone, without projection or rollup, for comparison.
INSERT INTO probe_events (time, target_id, latency_us)
SELECT * FROM unnest(%(times)b::timestamptz[], %(target_ids)b::integer[], %(latencies)b::integer[])
ORDER BY 2, 1
ON CONFLICT DO NOTHING

-- log_minutes --
-- What a batch logs for the rollup refresher: the minutes its events fell in.
INSERT INTO rollup_log (bucket)
SELECT DISTINCT date_bin(interval '1 minute', t, timestamptz 'epoch')
FROM unnest(%(times)b::timestamptz[]) t


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

-- fold_copied_probes --
-- Fold probe events just appended by COPY into the latest state of their targets (tried and
-- not kept: see the module): at most one event per target, each newer than what the writer
-- last committed for its target, so each is one step of its fold (append_probes_once's
-- rules). Placeholders as in append_probes. Returns the targets whose state was not updated
-- (none stored yet, or a newer one from another writer), for the caller to refold.
WITH new AS (
    SELECT time, target_id, latency_us FROM {incoming}
){rollup}, merged AS (
    UPDATE target_state t SET
        last_probe_at = n.time,
        latency_us = n.latency_us,
        last_ok_at = CASE WHEN n.latency_us >= 0 THEN n.time ELSE t.last_ok_at END,
        status_since = CASE WHEN (t.latency_us >= 0) = (n.latency_us >= 0) THEN t.status_since
                            ELSE n.time END,
        consecutive_failures = CASE WHEN n.latency_us >= 0 THEN 0
                                    ELSE t.consecutive_failures + 1 END,
        last_error = CASE WHEN n.latency_us < 0 THEN -n.latency_us ELSE t.last_error END,
        last_error_at = CASE WHEN n.latency_us < 0 THEN n.time ELSE t.last_error_at END
    FROM new n
    WHERE t.target_id = n.target_id AND n.time > t.last_probe_at
    RETURNING t.target_id
)
-- The list is a subquery run only when some state was not updated, which is rare.
SELECT CASE WHEN (SELECT count(*) FROM merged) < %(events)s
            THEN (SELECT array_agg(target_id) FROM new
                  WHERE target_id NOT IN (SELECT target_id FROM merged)) END AS unfolded

-- copy_probes --
-- Append probe events known to be new, in PostgreSQL's binary COPY format (a heap
-- multi-insert instead of speculative inserts); a duplicate fails it.
COPY probe_events (time, target_id, latency_us) FROM STDIN (FORMAT BINARY)

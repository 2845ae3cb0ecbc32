-- The usual batch in one round trip: dockping_append_probes_once() appends a batch of at most
-- one probe event per target and folds it into target_state (before this migration, a
-- statement sent by ingest), and can take the agent's lock and send the NOTIFY itself. Ingest
-- calls it outside a transaction, as a transaction of its own, where it used to send BEGIN,
-- the lock, the append, the NOTIFY and COMMIT one after another: five round trips, each a
-- wait behind the other batches in ingest's event loop. The same on both backends.
--
-- Every new event is one step of its target's fold, so the state is updated straight from
-- the incoming events, without grouping. A duplicate is skipped and folds nothing; a target
-- without state gets one. An event newer than its target's state is newer than every stored
-- event of the target (the state folds them all, under the agent's lock), so it is new for
-- sure: those are appended by a plain insert. The others (events of targets without a state,
-- late events and duplicates) are looked up by identity (insert_new_probes in
-- db/queries/ingest.sql), which works in a compacted partition too. Were a state ever behind
-- its events, the unique index of an open partition fails the statement and the caller writes
-- the batch through append_probes. A new event not newer than its target's state is late:
-- with p_refuse_late the call fails with SQLSTATE DP001 (and stores nothing), so that the
-- caller writes the batch in a transaction of its own and refolds; without, the late targets
-- are returned, left alone, for the caller to refold in its transaction.
--
-- Returns the events inserted, the late targets, and the targets with new events when that is
-- not every target of the batch. p_log_minutes logs the minutes of the new events in
-- rollup_log (plain PostgreSQL; TimescaleDB keeps its rollup by itself). p_notify sends
-- `NOTIFY dockping_events` as ingest's other batches do: the agent, the changed targets
-- (null past 500), and no containers.
CREATE OR REPLACE FUNCTION dockping_append_probes_once(
    p_agent_id integer, p_agent text, p_times timestamptz[], p_target_ids integer[],
    p_latencies integer[], p_log_minutes boolean, p_notify boolean, p_refuse_late boolean,
    OUT accepted integer, OUT late integer[], OUT changed integer[])
LANGUAGE plpgsql AS $$
DECLARE
    events integer := cardinality(p_target_ids);
    minutes timestamptz[];
    ids integer[];
BEGIN
    -- Batches of one agent, and so of one target, fold one after the other.
    PERFORM pg_advisory_xact_lock(dockping_lock('agent')::integer, p_agent_id);
    WITH incoming AS (
        SELECT * FROM unnest(p_times, p_target_ids, p_latencies) AS i (time, target_id, latency_us)
    ), merged AS (
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
        FROM incoming n
        WHERE t.target_id = n.target_id AND n.time > t.last_probe_at
        RETURNING n.time, n.target_id, n.latency_us
    ), fresh AS (
        INSERT INTO probe_events (time, target_id, latency_us)
        SELECT m.time, m.target_id, m.latency_us FROM merged m
        ORDER BY m.target_id, m.time
        RETURNING probe_events.target_id, probe_events.time, probe_events.latency_us
    ), pending AS (
        -- The count is uncorrelated, so checked once: when every event was newer than its
        -- state, incoming is not read again.
        SELECT * FROM incoming
        WHERE (SELECT count(*) FROM merged) < events
          AND incoming.target_id NOT IN (SELECT m.target_id FROM merged m)
    ), rest AS (
        INSERT INTO probe_events (time, target_id, latency_us)
        SELECT DISTINCT ON (p.target_id, p.time) p.time, p.target_id, p.latency_us
        FROM pending p
        WHERE NOT EXISTS (SELECT FROM probe_events e
                          WHERE e.target_id = p.target_id
                            AND dockping_bucket(e.time) = dockping_bucket(p.time)
                            AND e.time = p.time)
        ORDER BY p.target_id, p.time, p.latency_us
        RETURNING probe_events.target_id, probe_events.time, probe_events.latency_us
    ), new AS (
        SELECT * FROM fresh UNION ALL SELECT * FROM rest
    ), first AS (
        -- A target with a state is late here: the conflict leaves its state alone.
        INSERT INTO target_state (target_id, last_probe_at, latency_us, last_ok_at,
                                  status_since, consecutive_failures, last_error, last_error_at)
        SELECT r.target_id, r.time, r.latency_us, CASE WHEN r.latency_us >= 0 THEN r.time END,
               r.time, CASE WHEN r.latency_us >= 0 THEN 0 ELSE 1 END,
               CASE WHEN r.latency_us < 0 THEN -r.latency_us END,
               CASE WHEN r.latency_us < 0 THEN r.time END
        FROM rest r
        ORDER BY r.target_id
        ON CONFLICT DO NOTHING
        RETURNING target_state.target_id
    )
    -- The lists are subqueries run only when asked for: most batches have no late event and
    -- no duplicate.
    SELECT f.fresh + r.rest,
           CASE WHEN r.rest > m.made
                THEN (SELECT array_agg(rest.target_id) FROM rest
                      WHERE rest.target_id NOT IN (SELECT first.target_id FROM first)) END,
           CASE WHEN f.fresh + r.rest < events
                THEN coalesce((SELECT array_agg(new.target_id) FROM new), '{}') END,
           CASE WHEN p_log_minutes
                THEN (SELECT array_agg(DISTINCT date_bin(interval '1 minute', new.time,
                                                         timestamptz 'epoch')) FROM new) END
    INTO accepted, late, changed, minutes
    FROM (SELECT count(*)::integer AS fresh FROM fresh) AS f,
         (SELECT count(*)::integer AS rest FROM rest) AS r,
         (SELECT count(*)::integer AS made FROM first) AS m;
    IF late IS NOT NULL AND p_refuse_late THEN
        RAISE EXCEPTION 'the batch holds events older than their targets'' states'
            USING ERRCODE = 'DP001';
    END IF;
    IF minutes IS NOT NULL THEN
        -- The minutes the new events fell in, for dockping_refresh_rollups() to recompute.
        INSERT INTO rollup_log (bucket) SELECT unnest(minutes);
    END IF;
    IF p_notify AND accepted > 0 THEN
        ids := ARRAY(SELECT DISTINCT unnest(coalesce(changed, p_target_ids)) ORDER BY 1);
        PERFORM pg_notify('dockping_events', json_build_object(
            'agent', p_agent,
            'targets', CASE WHEN cardinality(ids) <= 500 THEN to_json(ids) END,
            'containers', '[]'::json)::text);
    END IF;
END
$$;

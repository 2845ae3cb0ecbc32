-- Append probe events (three parallel arrays; any number per target, in any order) and fold
-- them into target_state. An event already stored (the same target and time) is skipped and
-- folds nothing; so is the second of one identity in the batch.
--
-- The fold. A target's first event makes its state: that event's time and outcome
-- (last_probe_at, latency_us; last_ok_at, or last_error_at and last_error), status_since at
-- it, consecutive_failures 1 when down, else 0. Later events fold onto a state as a group:
-- the group's own state is its newest event's time and outcome, its newest success's time,
-- its newest failure's time and error, and its trailing run (the events with the newest
-- one's status after the newest of the other status): the run's start and, when down, its
-- length. The state takes that on, but keeps its last_ok_at and last_error(_at) where the
-- group has none, and, when the group is one run of the state's own status, its
-- status_since, and its consecutive_failures plus the run's.
--
-- The events folded onto a state are its target's new ones, all newer than it. A target
-- with a new event that had to be looked up (it has no state yet, or the event is late, not
-- newer than the state), and each target of p_refold (`dockping rebuild` passes every one),
-- is folded afresh once the new events are in: its state is deleted, its first event makes
-- one, and the same statement runs again, given no new events, to fold the rest of its
-- stored events onto it.
--
-- The caller's agent lock (taken here when p_agent_id is given) means no other transaction
-- writes these targets meanwhile, so target_state as read here folds every stored event: an
-- event newer than its target's state is new for sure and is appended by a plain insert; the
-- others (a target's first events, late ones, resent ones) are looked up by identity, which
-- works in a compacted partition too (no unique index there: db/compaction.py). Were a state
-- behind its events (a hand edit), the unique index of an open partition fails the statement:
-- `dockping rebuild` mends it.
--
-- Returns the events inserted, and the targets with new events when that is not every target
-- of the batch (null: all of them). p_log_minutes logs the minutes of the new events in
-- rollup_log (plain PostgreSQL; TimescaleDB keeps its rollup by itself). p_notify sends
-- dockping_notify_events() for the batch's targets, for a call that is a whole batch.
CREATE OR REPLACE FUNCTION dockping_append_probes(
    p_agent_id integer, p_agent text, p_times timestamptz[], p_target_ids integer[],
    p_latencies integer[], p_log_minutes boolean, p_notify boolean,
    p_refold integer[] DEFAULT '{}',
    OUT accepted integer, OUT changed integer[])
LANGUAGE plpgsql AS $$
DECLARE
    targets integer[] := p_target_ids;
    total integer := cardinality(p_target_ids);
    refold integer[] := p_refold;
    own_round boolean := true;
    afresh integer[];
    minutes timestamptz[] := '{}';
    stepped integer[] := '{}';
    count integer;
    ids integer[];
    buckets timestamptz[];
BEGIN
    IF p_agent_id IS NOT NULL THEN
        -- Batches of one agent, and so of one target, fold one after the other.
        PERFORM pg_advisory_xact_lock(dockping_lock('agent')::integer, p_agent_id);
    END IF;
    accepted := 0;
    IF total > 0 AND refold = '{}'
       AND total = (SELECT count(DISTINCT t) FROM unnest(p_target_ids) AS t) THEN
        -- The usual batch: one event per target (each is probed once in a few seconds). An
        -- event newer than its target's state is then one step of the fold, taken in place
        -- with no grouping, and is new for sure, so appended by a plain insert; so is the
        -- event of a target without a state, which has no events (a state is written with
        -- its target's first events), and makes its state. This step is the fold below given
        -- one event; it is here because it costs the database a fifth less than the grouped
        -- statement on a batch of 1,000 targets, and a new target's first probe a round of
        -- it and a refold.
        WITH incoming AS (
            SELECT * FROM unnest(p_times, p_target_ids, p_latencies)
                AS i (time, target_id, latency_us)
        ), step AS (
            UPDATE target_state t SET
                last_probe_at = n.time,
                latency_us = n.latency_us,
                last_ok_at = CASE WHEN n.latency_us >= 0 THEN n.time ELSE t.last_ok_at END,
                status_since = CASE WHEN (t.latency_us >= 0) = (n.latency_us >= 0)
                                    THEN t.status_since ELSE n.time END,
                consecutive_failures = CASE WHEN n.latency_us >= 0 THEN 0
                                            ELSE t.consecutive_failures + 1 END,
                last_error = CASE WHEN n.latency_us < 0 THEN -n.latency_us ELSE t.last_error END,
                last_error_at = CASE WHEN n.latency_us < 0 THEN n.time ELSE t.last_error_at END
            FROM incoming n
            WHERE t.target_id = n.target_id AND n.time > t.last_probe_at
            RETURNING n.time, n.target_id, n.latency_us
        ), fresh AS (
            INSERT INTO probe_events (time, target_id, latency_us)
            SELECT time, target_id, latency_us FROM step ORDER BY target_id
            RETURNING target_id, time
        )
        -- The lists are subqueries run only when asked for.
        SELECT f.count,
               CASE WHEN f.count < total THEN ARRAY(SELECT target_id FROM fresh) END,
               CASE WHEN p_log_minutes
                    THEN ARRAY(SELECT DISTINCT date_bin(interval '1 minute', fresh.time,
                                                        timestamptz 'epoch') FROM fresh) END
        INTO accepted, stepped, minutes
        FROM (SELECT count(*)::integer AS count FROM fresh) AS f;
        IF accepted < total THEN
            -- The event of a target without a state makes it, and is appended by a plain
            -- insert too (a target without a state has no events).
            WITH first AS (
                INSERT INTO target_state (target_id, last_probe_at, latency_us, last_ok_at,
                                          status_since, consecutive_failures, last_error,
                                          last_error_at)
                SELECT n.target_id, n.time, n.latency_us,
                       CASE WHEN n.latency_us >= 0 THEN n.time END, n.time,
                       CASE WHEN n.latency_us >= 0 THEN 0 ELSE 1 END,
                       CASE WHEN n.latency_us < 0 THEN -n.latency_us END,
                       CASE WHEN n.latency_us < 0 THEN n.time END
                FROM unnest(p_times, p_target_ids, p_latencies) AS n (time, target_id, latency_us)
                WHERE NOT EXISTS (SELECT FROM target_state t WHERE t.target_id = n.target_id)
                ORDER BY n.target_id
                RETURNING last_probe_at AS time, target_id, latency_us
            ), fresh AS (
                INSERT INTO probe_events (time, target_id, latency_us)
                SELECT time, target_id, latency_us FROM first
                RETURNING target_id, time
            )
            SELECT accepted + count(*)::integer, stepped || array_agg(fresh.target_id),
                   minutes || CASE WHEN p_log_minutes
                                   THEN array_agg(DISTINCT date_bin(interval '1 minute',
                                                  fresh.time, timestamptz 'epoch')) END
            INTO accepted, stepped, minutes
            FROM fresh;
        END IF;
        IF accepted = total THEN
            p_target_ids := '{}';
        ELSE
            -- The rest go on to the fold below: late events and resent ones. An event taken
            -- above has its time in its target's state now, and an event at that time that
            -- was not taken is the stored one's resend, so neither goes on.
            SELECT coalesce(array_agg(i.time), '{}'), coalesce(array_agg(i.target_id), '{}'),
                   coalesce(array_agg(i.latency_us), '{}')
            INTO p_times, p_target_ids, p_latencies
            FROM unnest(p_times, p_target_ids, p_latencies) AS i (time, target_id, latency_us)
            LEFT JOIN target_state s USING (target_id)
            WHERE s.last_probe_at IS NULL OR i.time < s.last_probe_at;
        END IF;
    END IF;
    WHILE p_target_ids <> '{}' OR refold <> '{}' LOOP
        IF refold <> '{}' THEN
            -- Folded afresh: a target's first event makes its state; the statement below folds
            -- the rest of its events onto that.
            DELETE FROM target_state WHERE target_id = ANY(refold);
            INSERT INTO target_state (target_id, last_probe_at, latency_us, last_ok_at,
                                      status_since, consecutive_failures, last_error,
                                      last_error_at)
            SELECT DISTINCT ON (target_id) target_id, time, latency_us,
                   CASE WHEN latency_us >= 0 THEN time END, time,
                   CASE WHEN latency_us >= 0 THEN 0 ELSE 1 END,
                   CASE WHEN latency_us < 0 THEN -latency_us END,
                   CASE WHEN latency_us < 0 THEN time END
            FROM probe_events WHERE target_id = ANY(refold)
            ORDER BY target_id, time;
        END IF;
        WITH incoming AS (
            SELECT DISTINCT ON (i.target_id, i.time) i.time, i.target_id, i.latency_us,
                   s.last_probe_at
            FROM unnest(p_times, p_target_ids, p_latencies) AS i (time, target_id, latency_us)
            LEFT JOIN target_state s USING (target_id)
            ORDER BY i.target_id, i.time, i.latency_us
        ), fresh AS (
            INSERT INTO probe_events (time, target_id, latency_us)
            SELECT time, target_id, latency_us FROM incoming WHERE time > last_probe_at
            RETURNING target_id, time, latency_us
        ), rest AS (
            INSERT INTO probe_events (time, target_id, latency_us)
            SELECT p.time, p.target_id, p.latency_us FROM incoming p
            WHERE (p.last_probe_at IS NULL OR p.time <= p.last_probe_at)
              AND NOT EXISTS (SELECT FROM probe_events e
                              WHERE e.target_id = p.target_id
                                AND dockping_bucket(e.time) = dockping_bucket(p.time)
                                AND e.time = p.time)
            RETURNING target_id, time, latency_us
        ), new AS (
            SELECT * FROM fresh UNION ALL SELECT * FROM rest
        ), afresh AS (
            -- Looked up, and new: its target has no state, or the event is late.
            SELECT DISTINCT target_id FROM rest
        ), events AS (
            -- What each target folds onto its state: its new events, unless one of them is
            -- looked up; when folded afresh, every event it has after its first.
            SELECT * FROM fresh WHERE target_id NOT IN (SELECT target_id FROM afresh)
            UNION ALL
            -- By the index on target_id of each partition (most batches refold none).
            SELECT e.target_id, e.time, e.latency_us
            FROM probe_events e JOIN target_state s USING (target_id)
            WHERE cardinality(refold) > 0 AND e.target_id = ANY(refold)
              AND e.time > s.last_probe_at
        ), span AS (
            SELECT target_id, count(*) AS events,
                   min(time) AS first_at, max(time) AS last_at,
                   max(time) FILTER (WHERE latency_us >= 0) AS last_ok_at,
                   max(time) FILTER (WHERE latency_us < 0) AS last_error_at,
                   min(latency_us) AS first_latency  -- the latency, when it is the only event
            FROM events GROUP BY target_id
        ), flip AS (
            -- The newest of the other status than the newest event's (null: one run).
            SELECT *, coalesce(last_ok_at = last_at, false) AS last_ok,
                   CASE WHEN last_ok_at = last_at THEN last_error_at ELSE last_ok_at END AS flip_at
            FROM span
        ), run AS (
            -- What a target of several events needs a second look at its events for.
            SELECT f.target_id,
                   max(e.latency_us) FILTER (WHERE e.time = f.last_at) AS last_latency,
                   max(-e.latency_us) FILTER (WHERE e.time = f.last_error_at) AS last_error,
                   min(e.time) FILTER (WHERE e.time > coalesce(f.flip_at, '-infinity')) AS since,
                   count(*) FILTER (WHERE e.time > coalesce(f.flip_at, '-infinity')) AS length
            FROM flip f JOIN events e USING (target_id)
            WHERE f.events > 1
            GROUP BY f.target_id
        ), folded AS (
            -- The events' own state, and whether they are one run.
            SELECT f.target_id, f.flip_at IS NULL AS one_run,
                   f.last_at AS last_probe_at,
                   CASE WHEN f.events = 1 THEN f.first_latency ELSE r.last_latency END
                       AS latency_us,
                   f.last_ok_at,
                   CASE WHEN f.events = 1 THEN f.first_at ELSE r.since END AS status_since,
                   CASE WHEN f.last_ok THEN 0 WHEN f.events = 1 THEN 1 ELSE r.length END
                       AS consecutive_failures,
                   CASE WHEN f.events = 1 THEN -nullif(least(f.first_latency, 0), 0)
                        ELSE r.last_error END AS last_error,
                   f.last_error_at
            FROM flip f LEFT JOIN run r USING (target_id)
        ), taken_on AS (
            UPDATE target_state t SET
                last_probe_at = g.last_probe_at,
                latency_us = g.latency_us,
                last_ok_at = coalesce(g.last_ok_at, t.last_ok_at),
                status_since = CASE WHEN g.one_run AND (t.latency_us >= 0) = (g.latency_us >= 0)
                                    THEN t.status_since ELSE g.status_since END,
                consecutive_failures = CASE WHEN g.one_run AND t.latency_us < 0
                                                 AND g.latency_us < 0
                                            THEN t.consecutive_failures + g.consecutive_failures
                                            ELSE g.consecutive_failures END,
                last_error = coalesce(g.last_error, t.last_error),
                last_error_at = coalesce(g.last_error_at, t.last_error_at)
            FROM folded g
            WHERE t.target_id = g.target_id
        )
        SELECT n.count,
               CASE WHEN own_round AND accepted + n.count < total
                    THEN ARRAY(SELECT DISTINCT new.target_id FROM new) END,
               ARRAY(SELECT target_id FROM afresh),
               CASE WHEN p_log_minutes
                    THEN ARRAY(SELECT DISTINCT date_bin(interval '1 minute', new.time,
                                                        timestamptz 'epoch') FROM new) END
        INTO count, ids, afresh, buckets
        FROM (SELECT count(*)::integer AS count FROM new) AS n;
        IF own_round THEN  -- not a refold
            accepted := accepted + count;
            stepped := stepped || ids;
            minutes := minutes || buckets;
            own_round := false;
        END IF;
        EXIT WHEN afresh = '{}';
        -- Once the new events are in, those targets are folded afresh over every event they
        -- have: the same statement, with no new events.
        refold := afresh;
        p_times := '{}';
        p_target_ids := '{}';
        p_latencies := '{}';
    END LOOP;
    IF accepted < total THEN
        changed := ARRAY(SELECT DISTINCT unnest(stepped) ORDER BY 1);
    END IF;
    IF minutes <> '{}' THEN
        -- The minutes the new events fell in, for dockping_refresh_rollups() to recompute
        -- (a table of plain PostgreSQL only, so a statement of its own).
        INSERT INTO rollup_log (bucket) SELECT DISTINCT unnest(minutes);
    END IF;
    IF p_notify AND accepted > 0 THEN
        PERFORM dockping_notify_events(p_agent, coalesce(changed, targets), '{}');
    END IF;
END
$$;

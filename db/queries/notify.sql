-- notify_try_lock --
-- Take the notifier's session lock, so that one notifier at a time follows and delivers.
SELECT pg_try_advisory_lock(dockping_lock('notifier'))

-- notify_pending_probes --
-- Probe events of some targets newer than each one's notifier position (targets first seen:
-- since horizon).
-- With detailed (rules with tls_expires_within or unhealthy), each event's certificate expiry
-- (the newest one in probe_details up to it) and its container's Docker health then (the
-- newest health_status event up to it); without, nulls, and neither is read (the planner
-- drops a join whose condition is false).
SELECT t.target_id, e.time, e.latency_us, d.tls_not_after, h.health
FROM targets t
LEFT JOIN notify_targets n USING (target_id)
CROSS JOIN LATERAL (
    SELECT p.time, p.latency_us
    FROM probe_events p
    WHERE p.target_id = t.target_id
      AND p.time > coalesce(n.last_time, %(horizon)s::timestamptz)
      AND dockping_bucket(p.time) >= dockping_bucket(coalesce(n.last_time, %(horizon)s::timestamptz))
    ORDER BY dockping_bucket(p.time), p.time
    LIMIT %(per_target)s
) e
LEFT JOIN LATERAL (
    SELECT c.tls_not_after FROM probe_details c
    WHERE c.target_id = t.target_id AND c.time <= e.time AND c.tls_not_after IS NOT NULL
    ORDER BY c.time DESC
    LIMIT 1
) d ON %(detailed)s::boolean
LEFT JOIN LATERAL (
    SELECT c.detail ->> 'health' AS health
    FROM container_events c
    WHERE c.container_key = t.container_key AND c.action = 'health_status' AND c.time <= e.time
    ORDER BY c.time DESC
    LIMIT 1
) h ON %(detailed)s::boolean
WHERE t.target_id = ANY(%(target_ids)s::integer[])
ORDER BY t.target_id, e.time

-- notify_due_targets --
-- The targets with probe events newer than the notifier's position (targets first seen: since
-- horizon), for a sweep of every target: a target's state holds its newest event's time, so
-- this is one join of two narrow tables, not a look into every partition for each target.
SELECT s.target_id
FROM target_state s
LEFT JOIN notify_targets n USING (target_id)
WHERE s.last_probe_at > coalesce(n.last_time, %(horizon)s::timestamptz)
ORDER BY s.target_id

-- notify_target_info --
-- What rules match on and messages say about some targets; labels where the store has them.
SELECT t.target_id, a.name, c.name, c.image, c.compose_project, host(t.ip), t.port, t.protocol,
       coalesce(l.labels, '{}'::jsonb)
FROM targets t
JOIN containers c USING (container_key)
JOIN agents a USING (agent_id)
LEFT JOIN LATERAL (
    SELECT e.detail -> 'labels' AS labels
    FROM container_events e
    WHERE e.container_key = t.container_key AND e.detail -> 'labels' IS NOT NULL
    ORDER BY e.time DESC
    LIMIT 1
) l ON true
WHERE t.target_id = ANY(%(target_ids)s)

-- notify_select_states --
-- The rule engine's states of some targets.
SELECT target_id, states FROM notify_targets WHERE target_id = ANY(%(target_ids)s)

-- notify_upsert_states --
-- Keep the notifier's position and rule states of some targets.
INSERT INTO notify_targets AS n (target_id, last_time, states)
SELECT * FROM unnest(%(target_ids)s::integer[], %(last_times)s::timestamptz[], %(states)s::jsonb[])
ON CONFLICT (target_id) DO UPDATE SET last_time = EXCLUDED.last_time, states = EXCLUDED.states

-- notify_insert_outbox --
-- Queue messages; one per change per channel, so a change queued again is skipped.
INSERT INTO notify_outbox (change_key, channel, target_id, agent_id, kind, title, body)
SELECT * FROM unnest(%(change_keys)s::text[], %(channels)s::text[], %(target_ids)s::integer[],
                     %(agent_ids)s::integer[], %(kinds)s::text[], %(titles)s::text[],
                     %(bodies)s::text[])
ON CONFLICT (change_key, channel) DO NOTHING
RETURNING delivery_id

-- notify_agent_heartbeats --
-- Every agent's last heartbeat and whether the notifier has it as silent.
SELECT a.agent_id, a.name, s.last_heartbeat_at, n.silent
FROM agents a
JOIN agent_state s USING (agent_id)
LEFT JOIN notify_agents n USING (agent_id)

-- notify_upsert_agent --
-- Keep whether an agent is silent.
INSERT INTO notify_agents (agent_id, silent, last_heartbeat_at)
VALUES (%(agent_id)s, %(silent)s, %(last_heartbeat_at)s)
ON CONFLICT (agent_id) DO UPDATE SET silent = EXCLUDED.silent,
    last_heartbeat_at = EXCLUDED.last_heartbeat_at

-- notify_due --
-- Pending deliveries whose time has come, oldest first.
SELECT o.delivery_id, o.change_key, o.channel, o.target_id, o.agent_id, o.kind, o.title, o.body,
       o.attempts, a.name
FROM notify_outbox o
LEFT JOIN agents a USING (agent_id)
WHERE o.done_at IS NULL AND o.next_attempt_at <= %(now)s AND o.created_at <= %(ready_before)s
ORDER BY o.delivery_id
LIMIT %(limit)s

-- notify_finish --
-- Record attempts: done (sent, muted, dropped) or due again later.
UPDATE notify_outbox AS o
SET attempts = o.attempts + u.attempted,
    done_at = CASE WHEN u.done THEN %(now)s::timestamptz END,
    next_attempt_at = u.next_attempt_at
FROM unnest(%(delivery_ids)s::bigint[], %(attempted)s::integer[], %(done)s::boolean[],
            %(next_attempt_at)s::timestamptz[]) AS u (delivery_id, attempted, done, next_attempt_at)
WHERE o.delivery_id = u.delivery_id

-- notify_insert_events --
-- Append what became of each delivery attempt.
INSERT INTO notification_events (time, delivery_id, attempt, target_id, agent_id, kind, channel,
                                 status, message, error)
SELECT * FROM unnest(%(times)s::timestamptz[], %(delivery_ids)s::bigint[], %(attempts)s::integer[],
                     %(target_ids)s::integer[], %(agent_ids)s::integer[], %(kinds)s::text[],
                     %(channels)s::text[], %(statuses)s::text[], %(messages)s::text[],
                     %(errors)s::text[])
ON CONFLICT DO NOTHING

-- notify_insert_silence --
-- Add a silence.
INSERT INTO notify_silences (ends_at, match, reason)
VALUES (%(ends_at)s, %(match)s, %(reason)s)
RETURNING silence_id, created_at, ends_at, match, reason

-- notify_active_silences --
-- Silences not yet over.
SELECT silence_id, created_at, ends_at, match, reason
FROM notify_silences WHERE ends_at > %(now)s ORDER BY silence_id

-- notify_delete_silence --
-- Remove a silence.
DELETE FROM notify_silences WHERE silence_id = %(silence_id)s RETURNING silence_id

-- notify_listen --
-- Hear ingest's NOTIFY after each committed batch.
LISTEN dockping_events

-- notify_expire_outbox --
-- Forget outbox rows done before the retention cutoff.
DELETE FROM notify_outbox WHERE done_at < %(cutoff)s

-- notify_expire_events --
-- Drop notification events older than the retention cutoff, like every other event.
DELETE FROM notification_events WHERE time < %(cutoff)s

-- notify_stale_changes --
-- The targets whose status is `stale` (%(stale)s) and that the notifier has not told yet, and
-- those it told whose status is another now: dockping_latest's status, as of a time.
SELECT l.target_id, l.status, l.stale_since, l.last_probe_at, n.since AS told_since,
       g.agent_silent, n.by_silence
FROM dockping_latest(%(as_of)s, %(stale_after)s, %(default_window)s, %(silent_after)s) l
JOIN containers c USING (container_key)
JOIN dockping_agent_view(%(as_of)s, %(silent_after)s) g USING (agent_id)
LEFT JOIN notify_stale n USING (target_id)
WHERE (l.status = %(stale)s) <> (n.target_id IS NOT NULL)
ORDER BY l.target_id

-- notify_told_stale --
-- Keep that the notifier told these targets are stale.
INSERT INTO notify_stale (target_id, since, by_silence)
SELECT * FROM unnest(%(target_ids)s::integer[], %(since)s::timestamptz[],
                     %(by_silence)s::boolean[])
ON CONFLICT (target_id) DO UPDATE SET since = EXCLUDED.since, by_silence = EXCLUDED.by_silence

-- notify_forget_stale --
-- Forget that these targets were told stale (their status is another now).
DELETE FROM notify_stale WHERE target_id = ANY(%(target_ids)s::integer[])

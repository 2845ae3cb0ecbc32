-- containers_page_next --
-- One page of the container listing in name order (lower(name), container_key) after a
-- keyset position, gone containers hidden. It walks an index of container_listing (by name,
-- by agent or by project: the filters that are null fold away) and rolls each row up on its
-- own (dockping_container_status for that container alone, OFFSET 0), so a page reads its
-- own containers' addresses and no other.
SELECT c.container_key, c.container_id, c.name, c.image, c.compose_project, c.compose_service,
       c.agent, r.status, r.addresses_up, r.addresses_total, r.status_since, c.name_key, cs.health
FROM container_listing c
CROSS JOIN LATERAL (
    SELECT s.* FROM dockping_container_status s WHERE s.container_key = c.container_key OFFSET 0
) r
LEFT JOIN container_state cs ON cs.container_key = c.container_key
WHERE r.status <> 'gone'
  AND (%(agent)s::text IS NULL OR c.agent = %(agent)s::text)
  AND (%(project)s::text IS NULL OR c.compose_project = %(project)s::text)
  AND (%(q)s::text IS NULL OR c.name_key LIKE %(q)s::text OR c.image_key LIKE %(q)s::text)
  AND (%(after)s::text IS NULL
       OR (c.name_key, c.container_key) > (%(after)s::text, %(row_id)s::integer))
ORDER BY c.name_key ASC, c.container_key ASC
LIMIT %(limit)s

-- containers_page_prev --
-- The page before a keyset position, as containers_page_next reads the one after (in
-- reverse order: query/containers.py turns it round).
SELECT c.container_key, c.container_id, c.name, c.image, c.compose_project, c.compose_service,
       c.agent, r.status, r.addresses_up, r.addresses_total, r.status_since, c.name_key, cs.health
FROM container_listing c
CROSS JOIN LATERAL (
    SELECT s.* FROM dockping_container_status s WHERE s.container_key = c.container_key OFFSET 0
) r
LEFT JOIN container_state cs ON cs.container_key = c.container_key
WHERE r.status <> 'gone'
  AND (%(agent)s::text IS NULL OR c.agent = %(agent)s::text)
  AND (%(project)s::text IS NULL OR c.compose_project = %(project)s::text)
  AND (%(q)s::text IS NULL OR c.name_key LIKE %(q)s::text OR c.image_key LIKE %(q)s::text)
  AND (%(after)s::text IS NULL
       OR (c.name_key, c.container_key) < (%(after)s::text, %(row_id)s::integer))
ORDER BY c.name_key DESC, c.container_key DESC
LIMIT %(limit)s

-- containers_page_status_next --
-- One page of the containers with one of some statuses, in name order after a keyset
-- position: every container is rolled up at once (one pass over the narrow address tables),
-- as a rare status would make a walk of the name index roll them all up one by one.
SELECT c.container_key, c.container_id, c.name, c.image, c.compose_project, c.compose_service,
       c.agent, r.status, r.addresses_up, r.addresses_total, r.status_since, c.name_key, cs.health
FROM container_listing c
JOIN dockping_container_status r USING (container_key)
LEFT JOIN container_state cs ON cs.container_key = c.container_key
WHERE r.status = ANY(%(statuses)s::text[])
  AND (%(agent)s::text IS NULL OR c.agent = %(agent)s::text)
  AND (%(project)s::text IS NULL OR c.compose_project = %(project)s::text)
  AND (%(q)s::text IS NULL OR c.name_key LIKE %(q)s::text OR c.image_key LIKE %(q)s::text)
  AND (%(after)s::text IS NULL
       OR (c.name_key, c.container_key) > (%(after)s::text, %(row_id)s::integer))
ORDER BY c.name_key ASC, c.container_key ASC
LIMIT %(limit)s

-- containers_page_status_prev --
-- The page before a keyset position, as containers_page_status_next reads the one after.
SELECT c.container_key, c.container_id, c.name, c.image, c.compose_project, c.compose_service,
       c.agent, r.status, r.addresses_up, r.addresses_total, r.status_since, c.name_key, cs.health
FROM container_listing c
JOIN dockping_container_status r USING (container_key)
LEFT JOIN container_state cs ON cs.container_key = c.container_key
WHERE r.status = ANY(%(statuses)s::text[])
  AND (%(agent)s::text IS NULL OR c.agent = %(agent)s::text)
  AND (%(project)s::text IS NULL OR c.compose_project = %(project)s::text)
  AND (%(q)s::text IS NULL OR c.name_key LIKE %(q)s::text OR c.image_key LIKE %(q)s::text)
  AND (%(after)s::text IS NULL
       OR (c.name_key, c.container_key) < (%(after)s::text, %(row_id)s::integer))
ORDER BY c.name_key DESC, c.container_key DESC
LIMIT %(limit)s

-- container_addresses --
-- The current addresses of some containers, for their expanded rows and their uptime: their
-- targets by container (an index), then each one's row of latest_state alone (OFFSET 0: a
-- lookup per target, where a join would compute every address's state first).
SELECT t.container_key, l.target_id, l.network, l.ip, l.port, l.protocol, l.status,
       l.latency_ms, l.error, l.status_since
FROM targets t
CROSS JOIN LATERAL (SELECT * FROM latest_state x WHERE x.target_id = t.target_id OFFSET 0) l
WHERE t.container_key = ANY(%(container_keys)s::integer[]) AND l.status <> 'gone'
ORDER BY t.container_key, l.network, l.ip, l.port

-- projects_list --
-- Every project (compose project or Swarm stack; '' for the containers without one) with
-- its containers' roll-ups: how many are up and the worst status, from one pass over the
-- address statuses (dockping_container_status). Gone containers count in no total.
SELECT c.compose_project AS project,
       (count(*) FILTER (WHERE r.status = 'up'))::integer AS containers_up,
       (count(*) FILTER (WHERE r.status <> 'gone'))::integer AS containers_total,
       sum(r.addresses_up)::integer AS addresses_up,
       sum(r.addresses_total)::integer AS addresses_total,
       dockping_worst_status(array_agg(r.status)) AS status
FROM dockping_container_status r
JOIN container_listing c USING (container_key)
GROUP BY c.compose_project
HAVING dockping_worst_status(array_agg(r.status)) <> 'gone'
ORDER BY c.compose_project

-- projects_uptime --
-- Probes and failures of every project's addresses that are not gone, in the hour of
-- %(now)s and the 23 before it, from the hourly rollup: each project's 24 h uptime, as
-- group_uptime_hours counts it for the same addresses, in one read for them all (the
-- addresses joined to the hours, not looked up one by one).
SELECT c.compose_project AS project, sum(h.probes)::bigint AS probes,
       sum(h.failures)::bigint AS failures
FROM address_rollup a
JOIN container_listing c USING (container_key)
JOIN latency_hour h ON h.target_id = a.target_id
WHERE a.status <> 'gone'
  AND h.bucket >= date_trunc('hour', %(now)s::timestamptz) - interval '23 hours'
GROUP BY c.compose_project

-- project_containers --
-- One project's current containers with their roll-ups, by service and name.
SELECT c.container_key, c.container_id, c.name, c.image, c.compose_service, c.agent,
       r.status, r.addresses_up, r.addresses_total, r.status_since
FROM container_listing c
CROSS JOIN LATERAL (
    SELECT s.* FROM dockping_container_status s WHERE s.container_key = c.container_key OFFSET 0
) r
WHERE c.compose_project = %(project)s AND r.status <> 'gone'
ORDER BY c.compose_service, c.name_key, c.container_key

-- project_services --
-- One project's services (its current containers grouped by compose service), each with the
-- worst status of its containers, since when its newest change holds, and its target ids;
-- and on every row the project's status, the worst of its services' (so of its containers').
SELECT c.compose_service AS service,
       dockping_worst_status(array_agg(r.status)) AS status,
       dockping_worst_status(array_agg(dockping_worst_status(array_agg(r.status))) OVER ())
           AS project_status,
       (count(DISTINCT c.container_key) FILTER (WHERE r.status = 'up'))::integer
           AS containers_up,
       count(DISTINCT c.container_key)::integer AS containers_total,
       max(r.status_since) AS status_since,
       array_agg(t.target_id ORDER BY t.target_id) AS target_ids
FROM container_listing c
CROSS JOIN LATERAL (
    SELECT s.* FROM dockping_container_status s WHERE s.container_key = c.container_key OFFSET 0
) r
JOIN targets t ON t.container_key = c.container_key
WHERE c.compose_project = %(project)s AND r.status <> 'gone'
GROUP BY c.compose_service
ORDER BY c.compose_service

-- service_hours --
-- Probes and failures per hour of each service of some targets since a time, from the
-- hourly rollup: the status page's uptime bars and incidents.
SELECT c.compose_service AS service, h.bucket, sum(h.probes)::bigint AS probes,
       sum(h.failures)::bigint AS failures
FROM latency_hour h
JOIN targets t USING (target_id)
JOIN containers c USING (container_key)
WHERE h.target_id = ANY(%(target_ids)s::integer[]) AND h.bucket >= %(since)s
GROUP BY c.compose_service, h.bucket
ORDER BY c.compose_service, h.bucket

-- group_uptime --
-- Probes and failures per target over the 24 h before %(now)s: the whole hours from the
-- hourly rollup, the minutes before the first of them from the minute rollup.
WITH w AS (
    SELECT %(now)s::timestamptz - interval '24 hours' AS since,
           date_trunc('hour', %(now)s::timestamptz - interval '24 hours')
               + CASE WHEN date_trunc('hour', %(now)s::timestamptz - interval '24 hours')
                           < %(now)s::timestamptz - interval '24 hours'
                      THEN interval '1 hour' ELSE interval '0' END AS hour
)
SELECT u.target_id, sum(u.probes)::bigint AS probes, sum(u.failures)::bigint AS failures
FROM (
    SELECT m.target_id, m.probes, m.failures
    FROM latency_minute m, w
    WHERE m.target_id = ANY(%(target_ids)s::integer[])
      AND m.bucket >= w.since AND m.bucket < w.hour
    UNION ALL
    SELECT h.target_id, h.probes, h.failures
    FROM latency_hour h, w
    WHERE h.target_id = ANY(%(target_ids)s::integer[]) AND h.bucket >= w.hour
) u
GROUP BY u.target_id

-- badge_project --
-- A project's status (the worst of its current containers') and their target ids.
SELECT dockping_worst_status(array_agg(r.status)) AS status,
       array_agg(t.target_id) AS target_ids
FROM container_listing c
CROSS JOIN LATERAL (
    SELECT s.* FROM dockping_container_status s WHERE s.container_key = c.container_key OFFSET 0
) r
JOIN targets t ON t.container_key = c.container_key
WHERE c.compose_project = %(name)s AND r.status <> 'gone'
HAVING count(*) > 0

-- badge_container --
-- The status of the current containers of this name (the worst, when several agents have
-- one), with their projects and target ids.
SELECT dockping_worst_status(array_agg(r.status)) AS status,
       array_agg(t.target_id) AS target_ids,
       array_agg(DISTINCT c.compose_project) AS projects
FROM container_listing c
CROSS JOIN LATERAL (
    SELECT s.* FROM dockping_container_status s WHERE s.container_key = c.container_key OFFSET 0
) r
JOIN targets t ON t.container_key = c.container_key
WHERE c.name_key = lower(%(name)s) AND c.name = %(name)s AND r.status <> 'gone'
HAVING count(*) > 0

-- badge_target --
-- One address's status and its container's project.
SELECT a.status, c.compose_project
FROM dockping_address_status a
JOIN containers c USING (container_key)
WHERE a.target_id = %(target_id)s

-- group_uptime_hours --
-- Probes and failures per target in the hour of %(now)s and the 23 before it, from the
-- hourly rollup alone: the 24 h uptime of a whole project or service, where reading every
-- address's minutes before the first whole hour would cost more than the rest together.
SELECT h.target_id, sum(h.probes)::bigint AS probes, sum(h.failures)::bigint AS failures
FROM latency_hour h
WHERE h.target_id = ANY(%(target_ids)s::integer[])
  AND h.bucket >= date_trunc('hour', %(now)s::timestamptz) - interval '23 hours'
GROUP BY h.target_id

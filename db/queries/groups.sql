-- containers_page --
-- One page of the container listing in name order, after or before a keyset position ({op}
-- and {order} come from a fixed pair in query/containers.py). Each row's roll-up is read
-- from dockping_container_status for that container alone, so an unfiltered page walks the
-- name index and rolls up only the rows it shows. No status filter hides gone containers.
SELECT c.container_key, c.container_id, c.name, c.image, c.compose_project, c.compose_service,
       a.name AS agent, r.status, r.addresses_up, r.addresses_total, r.status_since,
       r.target_ids, lower(c.name) AS name_key
FROM containers c
JOIN agents a USING (agent_id)
CROSS JOIN LATERAL (
    SELECT s.status, s.addresses_up, s.addresses_total, s.status_since, s.target_ids
    FROM dockping_container_status s
    WHERE s.container_key = c.container_key
) r
WHERE CASE WHEN cardinality(%(statuses)s::text[]) = 0 THEN r.status <> 'gone'
           ELSE r.status = ANY(%(statuses)s::text[]) END
  AND (%(agent)s::text IS NULL OR a.name = %(agent)s::text)
  AND (%(project)s::text IS NULL OR c.compose_project = %(project)s::text)
  AND (%(q)s::text IS NULL OR lower(c.name) LIKE %(q)s::text OR lower(c.image) LIKE %(q)s::text)
  AND (%(after)s::text IS NULL
       OR (lower(c.name), c.container_key) {op} (%(after)s::text, %(row_id)s::integer))
ORDER BY lower(c.name) {order}, c.container_key {order}
LIMIT %(limit)s

-- container_addresses --
-- The current addresses of some containers, for a container's expanded row.
SELECT t.container_key, l.target_id, l.network, l.ip, l.port, l.protocol, a.status,
       l.latency_ms, l.error, a.status_since
FROM targets t
JOIN latest_state l USING (target_id)
JOIN dockping_address_status a USING (target_id)
WHERE t.container_key = ANY(%(container_keys)s::integer[]) AND a.status <> 'gone'
ORDER BY t.container_key, l.network, l.ip, l.port

-- projects_list --
-- Every project (compose project or Swarm stack; '' for the containers without one) with
-- its containers' roll-ups: how many are up, the worst status, and its addresses' target ids
-- (for the 24 h uptime). Gone containers count in no total.
WITH r AS MATERIALIZED (
    SELECT c.compose_project AS project, s.status, s.addresses_up, s.addresses_total,
           s.target_ids
    FROM dockping_container_status s
    JOIN containers c USING (container_key)
),
ids AS (
    SELECT r.project, array_agg(t.id) AS target_ids
    FROM r, unnest(r.target_ids) t(id)
    GROUP BY r.project
),
g AS (
    SELECT r.project,
           (count(*) FILTER (WHERE r.status = 'up'))::integer AS containers_up,
           (count(*) FILTER (WHERE r.status <> 'gone'))::integer AS containers_total,
           sum(r.addresses_up)::integer AS addresses_up,
           sum(r.addresses_total)::integer AS addresses_total,
           dockping_worst_status(array_agg(r.status)) AS status
    FROM r
    GROUP BY r.project
)
SELECT g.project, g.containers_up, g.containers_total, g.addresses_up, g.addresses_total,
       g.status, coalesce(ids.target_ids, '{}') AS target_ids
FROM g LEFT JOIN ids USING (project)
WHERE g.status <> 'gone'
ORDER BY g.project

-- project_containers --
-- One project's containers with their roll-ups, by service and name, for its status page.
SELECT c.container_key, c.container_id, c.name, c.image, c.compose_service, a.name AS agent,
       s.status, s.addresses_up, s.addresses_total, s.status_since, s.target_ids
FROM containers c
JOIN agents a USING (agent_id)
JOIN dockping_container_status s USING (container_key)
WHERE c.compose_project = %(project)s AND s.status <> 'gone'
ORDER BY c.compose_service, lower(c.name), c.container_key

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
-- A project's status (the worst of its containers') and its addresses' target ids.
SELECT dockping_worst_status(array_agg(s.status)) AS status,
       coalesce(array_agg(t.id) FILTER (WHERE t.id IS NOT NULL), '{}') AS target_ids,
       max(c.compose_project) AS project
FROM containers c
JOIN dockping_container_status s USING (container_key)
LEFT JOIN LATERAL unnest(s.target_ids) t(id) ON true
WHERE c.compose_project = %(name)s AND s.status <> 'gone'
HAVING count(*) > 0

-- badge_container --
-- The status of the containers of this name (the worst, when several agents have one), with
-- their projects and target ids.
SELECT dockping_worst_status(array_agg(s.status)) AS status,
       coalesce(array_agg(t.id) FILTER (WHERE t.id IS NOT NULL), '{}') AS target_ids,
       array_agg(DISTINCT c.compose_project) AS projects
FROM containers c
JOIN dockping_container_status s USING (container_key)
LEFT JOIN LATERAL unnest(s.target_ids) t(id) ON true
WHERE c.name = %(name)s AND s.status <> 'gone'
HAVING count(*) > 0

-- badge_target --
-- One address's status and its container's project.
SELECT a.status, c.compose_project
FROM dockping_address_status a
JOIN containers c USING (container_key)
WHERE a.target_id = %(target_id)s

-- project_services --
-- One project's services (its containers grouped by compose service), each with the worst
-- status of its containers, since when its newest change holds, and its target ids.
WITH r AS MATERIALIZED (
    SELECT c.compose_service AS service, s.status, s.status_since, s.target_ids
    FROM containers c
    JOIN dockping_container_status s USING (container_key)
    WHERE c.compose_project = %(project)s AND s.status <> 'gone'
),
ids AS (
    SELECT r.service, array_agg(t.id ORDER BY t.id) AS target_ids
    FROM r, unnest(r.target_ids) t(id)
    GROUP BY r.service
)
SELECT g.service, g.status, g.containers_up, g.containers_total, g.status_since,
       coalesce(ids.target_ids, '{}') AS target_ids
FROM (
    SELECT r.service, dockping_worst_status(array_agg(r.status)) AS status,
           (count(*) FILTER (WHERE r.status = 'up'))::integer AS containers_up,
           count(*)::integer AS containers_total, max(r.status_since) AS status_since
    FROM r
    GROUP BY r.service
) g
LEFT JOIN ids USING (service)
ORDER BY g.service

-- project_status --
-- One project's status: the worst of its current containers'.
SELECT dockping_worst_status(array_agg(s.status)) AS status
FROM containers c
JOIN dockping_container_status s USING (container_key)
WHERE c.compose_project = %(project)s AND s.status <> 'gone'
HAVING count(*) > 0

-- bench_agents --
-- The benchmark's agents: agent-0 .. agent-(n-1), each with a recent heartbeat.
INSERT INTO agents (name)
SELECT 'agent-' || a FROM generate_series(0, %(agents)s::integer - 1) a

-- bench_agent_state --
-- Every agent heard from just now, so that no banner shows.
INSERT INTO agent_state (agent_id, last_heartbeat_at, version, docker_ok, targets, spool_bytes, dropped)
SELECT agent_id, now(), 'bench', true, 0, 0, 0 FROM agents

-- bench_containers --
-- One container per target (the extra one is the 30-day target's), spread over the agents.
INSERT INTO containers (agent_id, container_id, name, image, compose_project, compose_service)
SELECT (SELECT agent_id FROM agents WHERE name = 'agent-' || (c %% %(agents)s)),
       lpad(to_hex(c), 64, '0'),
       (ARRAY['web', 'api', 'db', 'cache', 'worker', 'queue', 'auth', 'search'])[1 + c %% 8]
           || '-' || lpad(c::text, 5, '0'),
       (ARRAY['nginx:1.27', 'postgres:17', 'redis:7', 'example/app:2.3'])[1 + c %% 4],
       'stack' || (c %% 40),
       'svc' || (c %% 8)
FROM generate_series(1, %(targets)s::integer + 1) c

-- bench_targets --
-- One TCP target per container, target_id = container_key.
INSERT INTO targets (container_key, network, ip, port, protocol)
SELECT container_key, 'bridge',
       ('10.' || (container_key / 62500) || '.' || (container_key / 250 %% 250) || '.'
        || (container_key %% 250 + 1))::inet,
       (ARRAY[80, 443, 5432, 6379, 8080])[1 + container_key %% 5], 'tcp'
FROM containers ORDER BY container_key

-- bench_events --
-- Each target's probes every 20 s, ending a minute ago; about 2 %% fail, and every 23rd
-- target has been down (timeouts) for its last 30 probes. Written in (target, time) order.
INSERT INTO probe_events (time, target_id, latency_us)
SELECT %(start)s::timestamptz + n * interval '20 seconds' + (t %% 20) * interval '1 second',
       t,
       CASE
           WHEN t %% 23 = 0 AND n >= %(per_target)s - 30 THEN -2
           WHEN (t * 7919 + n * 104729) %% 50 = 0 THEN -1
           ELSE 200 + (t * 31 + n * 17) %% 5000
       END
FROM generate_series(%(first)s::integer, %(last)s::integer) t,
     generate_series(0, %(per_target)s::integer - 1) n

-- bench_long_events --
-- The 30-day target: a probe every 2 s for 30 days (1,296,000 events), 1 %% failed.
INSERT INTO probe_events (time, target_id, latency_us)
SELECT %(start)s::timestamptz + n * interval '2 seconds',
       %(target_id)s,
       CASE WHEN n %% 100 = 7 THEN -2 ELSE 300 + (n * 37) %% 9000 END
FROM generate_series(0, %(count)s::integer - 1) n

-- bench_target_states --
-- The latest state of each target, as the projection would hold it after those events.
INSERT INTO target_state (target_id, last_probe_at, latency_us, last_ok_at, status_since,
                          consecutive_failures, last_error, last_error_at)
SELECT DISTINCT ON (target_id) target_id, time, latency_us,
       CASE WHEN latency_us >= 0 THEN time ELSE time - interval '10 minutes' END,
       time - interval '10 minutes',
       CASE WHEN latency_us >= 0 THEN 0 ELSE 30 END,
       CASE WHEN latency_us < 0 THEN -latency_us END,
       CASE WHEN latency_us < 0 THEN time END
FROM probe_events
WHERE time > now() - interval '10 minutes'
ORDER BY target_id, time DESC

-- bench_container_states --
-- Every 50th container stopped after its last probe; the others running.
INSERT INTO container_state (container_key, action, action_at)
SELECT container_key, CASE WHEN container_key %% 50 = 0 THEN 'stop' ELSE 'start' END, now()
FROM containers

-- bench_ready --
-- Whether a finished dataset of this scale is already in this database.
SELECT count(*) FROM pg_tables WHERE tablename = 'bench_query_done'

-- bench_mark_done --
-- Mark the dataset complete, so that a later run with the same database reuses it.
CREATE TABLE bench_query_done (targets integer, events bigint, made_at timestamptz DEFAULT now())

-- bench_deep_cursor_time --
-- The time of a target's n-th newest event (where a keyset page at that depth starts).
SELECT time FROM probe_events WHERE target_id = %(target_id)s
ORDER BY time DESC OFFSET %(depth)s LIMIT 1

-- bench_offset_page --
-- A page of a target's events read with OFFSET, for comparison with the keyset read.
SELECT e.time, e.latency_us >= 0 AS ok,
       CASE WHEN e.latency_us >= 0 THEN e.latency_us / 1000.0 END AS latency_ms
FROM probe_events e
WHERE e.target_id = %(target_id)s
ORDER BY e.time DESC
OFFSET %(depth)s LIMIT %(limit)s

-- One definition of a target's status, the agents' inventories and each target's freshness.
--
-- Before this migration the status rule was written in latest_state (0003), in
-- dockping_lifecycle_rows (0006), in the addresses_page query and in query/addresses.py; they
-- had drifted. Now dockping_target_status() alone decides a status, from a target's state row
-- and its container's; every reader (the views, the listing, the detail page, the live
-- stream, /metrics, the notifier) calls it. tests/test_status.py fails if a status word
-- appears in any other function, view or query.

-- Each target's probe interval and timeout, as its agent last sent them (null: not sent).
ALTER TABLE targets ADD COLUMN interval_ms integer, ADD COLUMN timeout_ms integer;

-- An agent's inventory: after every complete resync, the containers it watches (running or
-- paused), as container keys (ingest makes a key for an id it did not know). Append-only like
-- the other event tables, identified by (agent, time).
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_extension WHERE extname = 'timescaledb') THEN
        CREATE TABLE inventories (
            time            timestamptz NOT NULL,
            agent_id        integer NOT NULL,
            container_keys  integer[] NOT NULL,
            PRIMARY KEY (agent_id, time)
        );
        PERFORM create_hypertable('inventories', 'time', chunk_time_interval => interval '1 day');
        -- Inventories expire whole, with the other chunks: the function as before, and them.
        ALTER FUNCTION dockping_drop_partitions(timestamptz)
            RENAME TO dockping_drop_partitions_before_inventories;
        CREATE FUNCTION dockping_drop_partitions(cutoff timestamptz)
        RETURNS integer LANGUAGE sql AS $f$
            SELECT dockping_drop_partitions_before_inventories(cutoff)
                 + (SELECT count(*) FROM drop_chunks('inventories', older_than => cutoff))::integer
        $f$;
    ELSE
        -- dockping_ensure_partitions and dockping_drop_partitions manage every range-partitioned
        -- table: this one too.
        CREATE TABLE inventories (
            time            timestamptz NOT NULL,
            agent_id        integer NOT NULL,
            container_keys  integer[] NOT NULL,
            PRIMARY KEY (agent_id, time)
        ) PARTITION BY RANGE (time);
    END IF;
END
$$;

-- The newest inventory of each agent: a fold (the newest wins) over inventories.
CREATE TABLE agent_inventory (
    agent_id        integer PRIMARY KEY REFERENCES agents,
    time            timestamptz NOT NULL,
    container_keys  integer[] NOT NULL
);

-- The containers missing from their agent's newest inventory whose last lifecycle action
-- leaves them running (or paused, or unknown): exactly those, whatever the order in which the
-- inventories and lifecycle events arrived (dockping_refresh_absence keeps it so).
CREATE TABLE container_absence (
    container_key   integer PRIMARY KEY REFERENCES containers,
    agent_id        integer NOT NULL
);
CREATE INDEX container_absence_by_agent ON container_absence (agent_id);

-- Whether a lifecycle action leaves a container not running.
CREATE FUNCTION dockping_stops(action text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT action IN ('stop', 'die', 'kill', 'oom', 'destroy')
$$;

-- Bring container_absence up to date for some containers of one agent (keys null: all of
-- them). Returns the keys whose row came or went. The inventory is a hashed set here: a
-- 10,000-container agent costs one pass over its containers, not one per pair.
CREATE FUNCTION dockping_refresh_absence(p_agent_id integer, keys integer[])
RETURNS integer[] LANGUAGE plpgsql AS $$
DECLARE
    listed integer[];
    came integer[];
    went integer[];
BEGIN
    SELECT i.container_keys INTO listed FROM agent_inventory i WHERE i.agent_id = p_agent_id;
    WITH wanted AS (
        SELECT c.container_key
        FROM containers c
        WHERE listed IS NOT NULL
          AND c.agent_id = p_agent_id
          AND (keys IS NULL OR c.container_key = ANY(keys))
          AND c.container_key NOT IN (SELECT unnest(listed))
    ), removed AS (
        DELETE FROM container_absence a
        WHERE a.agent_id = p_agent_id
          AND (keys IS NULL OR a.container_key = ANY(keys))
          AND a.container_key NOT IN (SELECT w.container_key FROM wanted w)
        RETURNING a.container_key
    ), added AS (
        INSERT INTO container_absence (container_key, agent_id)
        SELECT w.container_key, p_agent_id FROM wanted w ORDER BY 1
        ON CONFLICT (container_key) DO NOTHING
        RETURNING container_key
    )
    SELECT ARRAY(SELECT container_key FROM added), ARRAY(SELECT container_key FROM removed)
    INTO came, went;
    RETURN came || went;
END
$$;

-- The same for some containers of any agents.
CREATE FUNCTION dockping_refresh_absence_of(keys integer[]) RETURNS integer[]
LANGUAGE plpgsql AS $$
DECLARE
    agent integer;
    changed integer[] := '{}';
BEGIN
    FOR agent IN
        SELECT DISTINCT c.agent_id FROM containers c
        JOIN agent_inventory i USING (agent_id)
        WHERE c.container_key = ANY(keys)
    LOOP
        changed := changed || dockping_refresh_absence(agent, keys);
    END LOOP;
    RETURN changed;
END
$$;

-- Append an inventory and fold it when it is the agent's newest; an older one (shipped late)
-- is kept as history and changes nothing. Returns whether it was new and the containers whose
-- absence changed.
CREATE FUNCTION dockping_append_inventory(
    p_agent_id integer, p_time timestamptz, p_keys integer[],
    OUT accepted boolean, OUT changed integer[])
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO inventories (time, agent_id, container_keys)
    VALUES (p_time, p_agent_id, ARRAY(SELECT DISTINCT unnest(p_keys) ORDER BY 1))
    ON CONFLICT DO NOTHING;
    accepted := FOUND;
    changed := '{}';
    IF NOT accepted THEN
        RETURN;
    END IF;
    INSERT INTO agent_inventory AS i (agent_id, time, container_keys)
    VALUES (p_agent_id, p_time, ARRAY(SELECT DISTINCT unnest(p_keys) ORDER BY 1))
    ON CONFLICT (agent_id) DO UPDATE SET time = EXCLUDED.time,
                                         container_keys = EXCLUDED.container_keys
    WHERE EXCLUDED.time > i.time;
    IF FOUND THEN
        changed := dockping_refresh_absence(p_agent_id, NULL);
    END IF;
END
$$;

-- A container first seen, or whose lifecycle changed, may now be (or no longer be) missing.
CREATE FUNCTION dockping_absence_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dockping_refresh_absence_of(ARRAY(SELECT DISTINCT container_key FROM changed));
    RETURN NULL;
END
$$;

CREATE TRIGGER absence_containers_insert AFTER INSERT ON containers
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_absence_changed();
CREATE TRIGGER absence_container_state_insert AFTER INSERT ON container_state
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_absence_changed();
CREATE TRIGGER absence_container_state_update AFTER UPDATE ON container_state
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_absence_changed();
CREATE TRIGGER absence_container_state_delete AFTER DELETE ON container_state
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_absence_changed();

-- Whether an agent is silent: no heartbeat (or, before its first, no sign of it at all) for
-- silent_after. The page's banner and the status of the agent's targets both ask this.
CREATE FUNCTION dockping_agent_silent(
    last_heartbeat_at timestamptz, first_seen_at timestamptz, as_of timestamptz,
    silent_after interval) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(last_heartbeat_at, first_seen_at) < as_of - silent_after
$$;

-- A target's probe window: its interval and timeout, as its agent sent them (null: not sent).
CREATE FUNCTION dockping_probe_window(interval_ms integer, timeout_ms integer) RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (interval_ms + timeout_ms) * interval '1 millisecond'
$$;

-- Until when a target's last probe vouches for it: the probe, its window (or default_window
-- when its agent sent none), and stale_after. (One timestamp addition per row: the listing
-- computes this for every row it orders or filters by status.)
CREATE FUNCTION dockping_fresh_until(
    last_probe_at timestamptz, probe_window interval, default_window interval,
    stale_after interval) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT last_probe_at + (coalesce(probe_window, default_window) + stale_after)
$$;

-- status: begin (the only place that writes a status word: tests/test_status.py)

-- The status of a target, from its container's lifecycle (action, action_at, detached_at:
-- when the container last left the target's network, absent: missing from its agent's newest
-- inventory, taken at inventory_at), its state (last_probe_at, latency_us, fresh_until) and
-- its agent (agent_silent), as of a time.
--   gone:    the container was destroyed; or, while not stopped, it left the target's network
--            or was missing from an inventory, after its last probe and lifecycle event;
--   stale:   its agent is silent, or its last probe is older than fresh_until;
--   stopped: the container stopped (stop, die, kill, oom) after the last probe;
--   unknown: never probed;
--   down:    the container is paused, or the last probe failed;
--   up:      the last probe succeeded.
CREATE FUNCTION dockping_target_status(
    action text, action_at timestamptz, detached_at timestamptz, absent boolean,
    inventory_at timestamptz, last_probe_at timestamptz, latency_us integer,
    fresh_until timestamptz, agent_silent boolean, as_of timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN action = 'destroy' THEN 'gone'
        -- Missing from an inventory (which lists every container the engine holds) newer than
        -- its last probe and lifecycle event: removed while no agent watched, whatever its
        -- last state.
        WHEN absent AND inventory_at > coalesce(last_probe_at, '-infinity')
             AND inventory_at > coalesce(action_at, '-infinity') THEN 'gone'
        WHEN NOT coalesce(dockping_stops(action), false)
             AND detached_at >= coalesce(last_probe_at, '-infinity') THEN 'gone'
        WHEN agent_silent THEN 'stale'
        WHEN dockping_stops(action) AND (last_probe_at IS NULL OR action_at >= last_probe_at)
            THEN 'stopped'
        WHEN last_probe_at IS NULL THEN 'unknown'
        WHEN fresh_until < as_of THEN 'stale'
        -- A paused container serves nothing, though its kernel may still complete a few
        -- handshakes: it is down from the pause event on, not only once probes time out.
        WHEN action = 'pause' THEN 'down'
        WHEN latency_us >= 0 THEN 'up'
        ELSE 'down'
    END
$$;

-- The order of the status sort: down first, then stale, unknown, up, stopped, gone.
CREATE FUNCTION dockping_status_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_position(ARRAY['down', 'stale', 'unknown', 'up', 'stopped', 'gone'], status) - 1
$$;

-- Since when a target has had its status: the event that made it (the destroy, the
-- detachment, the inventory, the stop, the pause), the moment it went stale, or the start of
-- its run of probes of the same outcome.
CREATE FUNCTION dockping_status_since(
    status text, action text, action_at timestamptz, detached_at timestamptz, absent boolean,
    inventory_at timestamptz, latency_us integer, run_since timestamptz,
    stale_since timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN status = 'gone' AND action = 'destroy' THEN action_at
        WHEN status = 'gone' THEN least(detached_at, CASE WHEN absent THEN inventory_at END)
        WHEN status = 'stale' THEN stale_since
        WHEN status = 'stopped' THEN action_at
        WHEN status = 'down' AND action = 'pause'
             AND (latency_us >= 0 OR run_since < action_at) THEN action_at
        ELSE run_since
    END
$$;

-- status: end

-- When an agent's targets went stale for its silence: silent_after past its last sign.
CREATE FUNCTION dockping_agent_stale_since(
    last_heartbeat_at timestamptz, first_seen_at timestamptz, silent_after interval)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(last_heartbeat_at, first_seen_at) + silent_after
$$;

-- Each agent as the statuses of its targets need it: silent or not, since when, and the time
-- of its newest inventory.
CREATE FUNCTION dockping_agent_view(as_of timestamptz, silent_after interval)
RETURNS TABLE (agent_id integer, agent_silent boolean, silent_since timestamptz,
               inventory_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT a.agent_id,
           dockping_agent_silent(s.last_heartbeat_at, a.first_seen_at, as_of, silent_after),
           dockping_agent_stale_since(s.last_heartbeat_at, a.first_seen_at, silent_after),
           i.time
    FROM agents a
    LEFT JOIN agent_state s USING (agent_id)
    LEFT JOIN agent_inventory i USING (agent_id)
$$;

-- The listing's lifecycle table keeps what the status takes from the container and the
-- agent, as stored (no status rule here any more): the lifecycle action, the network's
-- detachment, the absence from the newest inventory, the agent, and the probe window.
ALTER TABLE address_lifecycle DROP COLUMN gone_at,
    ADD COLUMN agent_id integer,
    ADD COLUMN detached_at timestamptz,
    ADD COLUMN absent boolean NOT NULL DEFAULT false,
    ADD COLUMN probe_window interval;

DROP FUNCTION dockping_lifecycle_rows(integer[]);
CREATE FUNCTION dockping_lifecycle_rows(keys integer[])
RETURNS SETOF address_lifecycle LANGUAGE sql STABLE AS $$
    SELECT t.target_id, cs.action, cs.action_at, c.agent_id, ns.detached_at,
           ab.container_key IS NOT NULL, dockping_probe_window(t.interval_ms, t.timeout_ms)
    FROM targets t
    JOIN containers c USING (container_key)
    LEFT JOIN container_state cs USING (container_key)
    LEFT JOIN network_state ns ON ns.container_key = t.container_key AND ns.network = t.network
    LEFT JOIN container_absence ab ON ab.container_key = t.container_key
    WHERE keys IS NULL OR t.container_key = ANY(keys)
$$;

CREATE OR REPLACE FUNCTION dockping_refresh_lifecycle(keys integer[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE address_lifecycle l SET action = n.action, action_at = n.action_at,
        agent_id = n.agent_id, detached_at = n.detached_at, absent = n.absent,
        probe_window = n.probe_window
    FROM dockping_lifecycle_rows(keys) n
    WHERE l.target_id = n.target_id AND l IS DISTINCT FROM n;
    INSERT INTO address_lifecycle SELECT * FROM dockping_lifecycle_rows(keys)
    ON CONFLICT (target_id) DO NOTHING;
END
$$;

CREATE TRIGGER listing_container_absence_insert AFTER INSERT ON container_absence
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_changed();
CREATE TRIGGER listing_container_absence_delete AFTER DELETE ON container_absence
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_changed();
CREATE TRIGGER listing_container_absence_truncate AFTER TRUNCATE ON container_absence
    FOR EACH STATEMENT EXECUTE FUNCTION dockping_lifecycle_truncated();

SELECT dockping_refresh_lifecycle(NULL);

-- Every target with its current status as of a time, readable: what the detail page, the
-- API, the live stream, /metrics and the notifier read (the listing's pages read the same
-- columns through the narrow listing tables). stale_since is when it went (or goes) stale.
CREATE FUNCTION dockping_latest(
    as_of timestamptz, stale_after interval, default_window interval, silent_after interval)
RETURNS TABLE (
    target_id integer, container_key integer, agent text, container_id text,
    container_name text, image text, compose_project text, network text, ip text,
    port integer, protocol text, status text, latency_ms float8, error text,
    last_probe_at timestamptz, last_ok_at timestamptz, status_since timestamptz,
    consecutive_failures integer, last_error text, last_error_at timestamptz,
    stale_since timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT x.target_id, x.container_key, x.agent, x.container_id, x.container_name, x.image,
           x.compose_project, x.network, x.ip, x.port, x.protocol, x.status,
           CASE WHEN x.latency_us >= 0 THEN x.latency_us / 1000::float8 END,
           CASE WHEN x.latency_us < 0 THEN pe.error WHEN x.action = 'pause' THEN 'paused' END,
           x.last_probe_at, x.last_ok_at,
           dockping_status_since(x.status, x.action, x.action_at, x.detached_at, x.absent,
                                 x.inventory_at, x.latency_us, x.run_since, x.stale_since),
           x.consecutive_failures, le.error, x.last_error_at, x.stale_since
    FROM (
        SELECT t.target_id, t.container_key, a.name AS agent, c.container_id,
               c.name AS container_name, c.image, c.compose_project, t.network,
               host(t.ip) AS ip, t.port, t.protocol, cs.action, cs.action_at, ns.detached_at,
               ab.container_key IS NOT NULL AS absent, g.inventory_at, s.last_probe_at,
               s.latency_us, s.last_ok_at,
               s.status_since AS run_since, s.consecutive_failures, s.last_error,
               s.last_error_at,
               CASE WHEN g.agent_silent THEN g.silent_since
                    ELSE dockping_fresh_until(
                        s.last_probe_at, dockping_probe_window(t.interval_ms, t.timeout_ms),
                        default_window, stale_after) END AS stale_since,
               dockping_target_status(
                   cs.action, cs.action_at, ns.detached_at, ab.container_key IS NOT NULL,
                   g.inventory_at, s.last_probe_at, s.latency_us,
                   dockping_fresh_until(
                       s.last_probe_at, dockping_probe_window(t.interval_ms, t.timeout_ms),
                       default_window, stale_after),
                   g.agent_silent, as_of) AS status
        FROM targets t
        JOIN containers c USING (container_key)
        JOIN agents a USING (agent_id)
        JOIN dockping_agent_view(as_of, silent_after) g USING (agent_id)
        LEFT JOIN target_state s USING (target_id)
        LEFT JOIN container_state cs USING (container_key)
        LEFT JOIN network_state ns ON ns.container_key = t.container_key AND ns.network = t.network
        LEFT JOIN container_absence ab ON ab.container_key = t.container_key
    ) x
    LEFT JOIN probe_errors pe ON pe.code = -x.latency_us
    LEFT JOIN probe_errors le ON le.code = x.last_error
$$;

-- The settings a session may give the views below (SET dockping.stale_after = '5m'); unset,
-- the defaults of settings.toml (query.stale_after 40s; agent.probe_interval 20s plus
-- agent.probe_timeout 2s; three heartbeats of agent.resync_interval 20s).
CREATE FUNCTION dockping_view_setting(name text, fallback interval) RETURNS interval
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('dockping.' || name, true), '')::interval, fallback)
$$;

-- The latest state of every address, with its status (see dockping_target_status), as of now.
DROP VIEW latest_state;
CREATE VIEW latest_state AS
SELECT target_id, agent, container_id, container_name, image, compose_project, network, ip,
       port, protocol, status, latency_ms, error, last_probe_at, last_ok_at, status_since,
       consecutive_failures, last_error, last_error_at, stale_since
FROM dockping_latest(now(), dockping_view_setting('stale_after', interval '40 seconds'),
                     dockping_view_setting('default_window', interval '22 seconds'),
                     dockping_view_setting('silent_after', interval '60 seconds'));

-- The targets the notifier has told are stale ("lost sight of"), and since when: a target's
-- status leaving stale sends "back in sight" and drops its row.
-- A target stale because its agent fell silent is told by the agent's own message instead
-- (by_silence), once for all its targets.
CREATE TABLE notify_stale (
    target_id   integer PRIMARY KEY REFERENCES targets,
    since       timestamptz NOT NULL,
    by_silence  boolean NOT NULL
);

-- The tables behind one definition of a target's status (dockping_target_status, in
-- db/schema/): each target's probe window, the agents' inventories, the containers missing
-- from them, and what the listing's lifecycle table keeps for the status.

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

-- The latest state of every address is redefined (db/schema/) on the columns below.
DROP VIEW IF EXISTS latest_state;
DROP FUNCTION IF EXISTS dockping_lifecycle_rows(integer[]);

-- The listing's lifecycle table keeps what the status takes from the container and the
-- agent, as stored (no status rule here any more): the lifecycle action, the network's
-- detachment, the absence from the newest inventory, the agent, and the probe window.
ALTER TABLE address_lifecycle DROP COLUMN gone_at,
    ADD COLUMN agent_id integer,
    ADD COLUMN detached_at timestamptz,
    ADD COLUMN absent boolean NOT NULL DEFAULT false,
    ADD COLUMN probe_window interval;

-- The targets the notifier has told are stale ("lost sight of"), and since when: a target's
-- status leaving stale sends "back in sight" and drops its row.
-- A target stale because its agent fell silent is told by the agent's own message instead
-- (by_silence), once for all its targets.
CREATE TABLE notify_stale (
    target_id   integer PRIMARY KEY REFERENCES targets,
    since       timestamptz NOT NULL,
    by_silence  boolean NOT NULL
);

-- The lifecycle rows again, by the functions of db/schema/, on the new columns.
-- after schema --
SELECT dockping_refresh_lifecycle(NULL);

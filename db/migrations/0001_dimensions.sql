-- The small dimension tables and the latest-state projections.
-- Event rows refer to these by integer id, so that an event row stays narrow.

CREATE TABLE agents (
    agent_id        integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    first_seen_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE containers (
    container_key   integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id        integer NOT NULL REFERENCES agents,
    container_id    text NOT NULL,
    name            text NOT NULL DEFAULT '',
    image           text NOT NULL DEFAULT '',
    compose_project text NOT NULL DEFAULT '',
    compose_service text NOT NULL DEFAULT '',
    UNIQUE (agent_id, container_id)
);

-- A target is one address of one container: (agent, container, ip, port, protocol).
CREATE TABLE targets (
    target_id       integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    container_key   integer NOT NULL REFERENCES containers,
    network         text NOT NULL DEFAULT '',
    ip              inet NOT NULL,
    port            integer CHECK (port BETWEEN 1 AND 65535),
    protocol        text NOT NULL,
    UNIQUE NULLS NOT DISTINCT (container_key, ip, port, protocol)
);

-- Error kinds, stored in an event as a negative latency_us (-code).
CREATE TABLE probe_errors (
    code    smallint PRIMARY KEY,
    error   text NOT NULL UNIQUE
);
INSERT INTO probe_errors (code, error) VALUES
    (1, 'refused'), (2, 'timeout'), (3, 'unreachable'), (4, 'reset'), (5, 'other');

-- The latest state per target: a fold over probe_events, rebuilt by `dockping rebuild`.
CREATE TABLE target_state (
    target_id            integer PRIMARY KEY REFERENCES targets,
    last_probe_at        timestamptz NOT NULL,
    latency_us           integer NOT NULL,  -- as in probe_events: >= 0 up, < 0 down (-error code)
    last_ok_at           timestamptz,
    status_since         timestamptz NOT NULL,
    consecutive_failures integer NOT NULL,
    last_error           smallint,
    last_error_at        timestamptz
) WITH (fillfactor = 50);  -- every batch updates its targets' rows: room for HOT updates

-- The latest lifecycle event per container: a fold over container_events.
-- When each container last left each network: a fold (max) over network_disconnect events.
-- A target on that network not probed since is gone from latest_state.
CREATE TABLE network_state (
    container_key   integer NOT NULL REFERENCES containers,
    network         text NOT NULL,
    detached_at     timestamptz NOT NULL,
    PRIMARY KEY (container_key, network)
);

CREATE TABLE container_state (
    container_key   integer PRIMARY KEY REFERENCES containers,
    action          text NOT NULL,
    action_at       timestamptz NOT NULL,
    exit_code       integer,
    health          text,
    health_at       timestamptz
);

CREATE TABLE agent_state (
    agent_id        integer PRIMARY KEY REFERENCES agents,
    last_heartbeat_at timestamptz NOT NULL,
    version         text NOT NULL,
    docker_ok       boolean NOT NULL,
    targets         integer NOT NULL,
    spool_bytes     bigint NOT NULL,
    dropped         bigint NOT NULL
);

-- The notifier: its position and rule state, the outbox of messages, the history of every
-- delivery attempt, and silences. The same on both backends: these tables stay small.

-- The notifier's position per target, kept in the same transaction as the messages it makes.
-- last_time is the newest probe event folded in; the next round reads only newer events,
-- through probe_events' (target_id, time) key, so late events that are still newer than it
-- are folded in time order wherever they arrive from.
CREATE TABLE notify_targets (
    target_id   integer PRIMARY KEY REFERENCES targets,
    last_time   timestamptz NOT NULL,
    states      jsonb NOT NULL  -- rule name -> the rule engine's state (notify/rules.py)
);

-- Whether each agent is silent (no heartbeat for notify.agent_silent_after resync intervals).
CREATE TABLE notify_agents (
    agent_id            integer PRIMARY KEY REFERENCES agents,
    silent              boolean NOT NULL,
    last_heartbeat_at   timestamptz NOT NULL
);

-- One message per change per channel. (change_key, channel) is the idempotency key: a change
-- folded twice (a crash before the position was kept) makes no second message.
CREATE TABLE notify_outbox (
    delivery_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    change_key      text NOT NULL,
    channel         text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    target_id       integer REFERENCES targets,
    agent_id        integer REFERENCES agents,
    kind            text NOT NULL,
    title           text NOT NULL,
    body            text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    done_at         timestamptz,  -- sent, muted or given up; null while pending
    UNIQUE (change_key, channel)
);
CREATE INDEX notify_outbox_pending ON notify_outbox (next_attempt_at) WHERE done_at IS NULL;

-- Every delivery attempt and its outcome, append-only: sent, failed (retried), muted, dropped.
CREATE TABLE notification_events (
    time        timestamptz NOT NULL,
    delivery_id bigint NOT NULL,
    attempt     integer NOT NULL,
    target_id   integer,
    agent_id    integer,
    kind        text NOT NULL,
    channel     text NOT NULL,
    status      text NOT NULL CHECK (status IN ('sent', 'failed', 'muted', 'dropped')),
    message     text NOT NULL,
    error       text
);
CREATE UNIQUE INDEX notification_events_key ON notification_events (delivery_id, attempt, time);
CREATE INDEX notification_events_target ON notification_events (target_id, time DESC);

-- Maintenance windows: while one is active, matching messages are muted.
CREATE TABLE notify_silences (
    silence_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    ends_at     timestamptz NOT NULL,
    match       jsonb NOT NULL,  -- agent, project, container, image, label, target_id
    reason      text NOT NULL
);

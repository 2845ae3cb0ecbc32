-- The status of every address as the one status definition decides it (dockping_target_status,
-- as of now, with the session's freshness settings, as latest_state has it), computed from the
-- narrow tables the address listing reads: the lifecycle row, the state row and the agent.
-- latest_state computes the same from seven tables for every address, so a roll-up of one
-- container through it cost a read of them all.
CREATE OR REPLACE VIEW dockping_address_status AS
SELECT x.target_id,
       x.container_key,
       x.status,
       dockping_status_since(x.status, x.action, x.action_at, x.detached_at, x.absent,
                             x.inventory_at, x.latency_us, x.run_since,
                             CASE WHEN x.agent_silent THEN x.silent_since ELSE x.fresh_until END)
           AS status_since
FROM (
    SELECT t.target_id, t.container_key, lc.action, lc.action_at, lc.detached_at, lc.absent,
           g.inventory_at, g.agent_silent, g.silent_since, s.latency_us,
           s.status_since AS run_since, f.fresh_until, st.status
    FROM targets t
    JOIN address_lifecycle lc USING (target_id)
    -- The session's settings, read once (OFFSET 0), not once a row.
    CROSS JOIN (
        SELECT dockping_view_setting('stale_after', interval '40 seconds') AS stale_after,
               dockping_view_setting('default_window', interval '22 seconds') AS default_window
        OFFSET 0
    ) v
    LEFT JOIN target_state s USING (target_id)
    LEFT JOIN dockping_agent_view(
        now(), dockping_view_setting('silent_after', interval '60 seconds')) g
        ON g.agent_id = lc.agent_id
    CROSS JOIN LATERAL (
        SELECT dockping_fresh_until(s.last_probe_at, lc.probe_window, v.default_window,
                                    v.stale_after) AS fresh_until
    ) f
    -- Once a row (OFFSET 0): the roll-ups read a status in several aggregates, and a status
    -- inlined into each would be decided that many times.
    CROSS JOIN LATERAL (
        SELECT dockping_target_status(
                   lc.action, lc.action_at, lc.detached_at, lc.absent, g.inventory_at,
                   s.last_probe_at, s.latency_us, f.fresh_until, g.agent_silent, now()) AS status
        OFFSET 0
    ) st
) x;

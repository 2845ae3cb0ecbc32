-- Every target with its current status as of a time, readable: what the detail page, the
-- API, the live stream, /metrics and the notifier read (the listing's pages read the same
-- columns through the narrow listing tables). stale_since is when it went (or goes) stale.
CREATE OR REPLACE FUNCTION dockping_latest(
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

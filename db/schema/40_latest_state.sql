-- The latest state of every address, with its status (dockping_target_status), as of now,
-- with the windows the session's settings give (dockping_view_setting).
CREATE OR REPLACE VIEW latest_state AS
SELECT target_id, agent, container_id, container_name, image, compose_project, network, ip,
       port, protocol, status, latency_ms, error, last_probe_at, last_ok_at, status_since,
       consecutive_failures, last_error, last_error_at, stale_since
FROM dockping_latest(now(), dockping_view_setting('stale_after', interval '40 seconds'),
                     dockping_view_setting('default_window', interval '22 seconds'),
                     dockping_view_setting('silent_after', interval '60 seconds'));

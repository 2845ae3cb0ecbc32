-- The status of every address as the one status definition decides it. This view is the only
-- place the roll-ups below read an address status from: point it at another definition and
-- every container, project, status page and badge follows: latest_state's status, which is
-- dockping_target_status.
CREATE OR REPLACE VIEW dockping_address_status AS
SELECT l.target_id,
       t.container_key,
       l.status,
       l.status_since
FROM targets t
JOIN latest_state l USING (target_id);

-- Every container lifecycle event, readable.
CREATE OR REPLACE VIEW container_history AS
SELECT e.time,
       a.name AS agent,
       c.container_id,
       c.name AS container_name,
       c.image,
       e.action,
       e.exit_code,
       e.detail
FROM container_events e
JOIN containers c USING (container_key)
JOIN agents a USING (agent_id);

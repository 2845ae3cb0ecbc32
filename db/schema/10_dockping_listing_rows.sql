-- The rows of both tables as the tables they come from say, for some containers' targets
-- (keys null: every container's).
CREATE OR REPLACE FUNCTION dockping_listing_rows(keys integer[])
RETURNS SETOF address_listing LANGUAGE sql STABLE AS $$
    SELECT t.target_id, t.container_key, a.name, c.container_id, c.name, lower(c.name), c.image,
           lower(c.image), c.compose_project, t.network, host(t.ip), t.port,
           coalesce(t.port, 0), t.protocol
    FROM targets t
    JOIN containers c USING (container_key)
    JOIN agents a USING (agent_id)
    WHERE keys IS NULL OR t.container_key = ANY(keys)
$$;

-- The rows of container_listing as the dimension tables say, for some containers (keys null:
-- every container).
CREATE OR REPLACE FUNCTION dockping_container_listing_rows(keys integer[])
RETURNS SETOF container_listing LANGUAGE sql STABLE AS $$
    SELECT c.container_key, a.name, c.container_id, c.name, lower(c.name), c.image,
           lower(c.image), c.compose_project, c.compose_service
    FROM containers c
    JOIN agents a USING (agent_id)
    WHERE (keys IS NULL OR c.container_key = ANY(keys))
      AND EXISTS (SELECT FROM targets t WHERE t.container_key = c.container_key)
$$;

-- Bring container_absence up to date for some containers of one agent (keys null: all of
-- them). Returns the keys whose row came or went. The inventory is a hashed set here: a
-- 10,000-container agent costs one pass over its containers, not one per pair.
CREATE OR REPLACE FUNCTION dockping_refresh_absence(p_agent_id integer, keys integer[])
RETURNS integer[] LANGUAGE plpgsql AS $$
DECLARE
    listed integer[];
    came integer[];
    went integer[];
BEGIN
    SELECT i.container_keys INTO listed FROM agent_inventory i WHERE i.agent_id = p_agent_id;
    WITH wanted AS (
        SELECT c.container_key
        FROM containers c
        WHERE listed IS NOT NULL
          AND c.agent_id = p_agent_id
          AND (keys IS NULL OR c.container_key = ANY(keys))
          AND c.container_key NOT IN (SELECT unnest(listed))
    ), removed AS (
        DELETE FROM container_absence a
        WHERE a.agent_id = p_agent_id
          AND (keys IS NULL OR a.container_key = ANY(keys))
          AND a.container_key NOT IN (SELECT w.container_key FROM wanted w)
        RETURNING a.container_key
    ), added AS (
        INSERT INTO container_absence (container_key, agent_id)
        SELECT w.container_key, p_agent_id FROM wanted w ORDER BY 1
        ON CONFLICT (container_key) DO NOTHING
        RETURNING container_key
    )
    SELECT ARRAY(SELECT container_key FROM added), ARRAY(SELECT container_key FROM removed)
    INTO came, went;
    RETURN came || went;
END
$$;

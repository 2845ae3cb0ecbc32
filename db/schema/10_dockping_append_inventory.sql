-- Append an inventory and fold it when it is the agent's newest; an older one (shipped late)
-- is kept as history and changes nothing. Returns whether it was new and the containers whose
-- absence changed.
CREATE OR REPLACE FUNCTION dockping_append_inventory(
    p_agent_id integer, p_time timestamptz, p_keys integer[],
    OUT accepted boolean, OUT changed integer[])
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO inventories (time, agent_id, container_keys)
    VALUES (p_time, p_agent_id, ARRAY(SELECT DISTINCT unnest(p_keys) ORDER BY 1))
    ON CONFLICT DO NOTHING;
    accepted := FOUND;
    changed := '{}';
    IF NOT accepted THEN
        RETURN;
    END IF;
    INSERT INTO agent_inventory AS i (agent_id, time, container_keys)
    VALUES (p_agent_id, p_time, ARRAY(SELECT DISTINCT unnest(p_keys) ORDER BY 1))
    ON CONFLICT (agent_id) DO UPDATE SET time = EXCLUDED.time,
                                         container_keys = EXCLUDED.container_keys
    WHERE EXCLUDED.time > i.time;
    IF FOUND THEN
        changed := dockping_refresh_absence(p_agent_id, NULL);
    END IF;
END
$$;

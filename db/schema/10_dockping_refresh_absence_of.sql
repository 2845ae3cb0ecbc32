-- The same for some containers of any agents.
CREATE OR REPLACE FUNCTION dockping_refresh_absence_of(keys integer[]) RETURNS integer[]
LANGUAGE plpgsql AS $$
DECLARE
    agent integer;
    changed integer[] := '{}';
BEGIN
    FOR agent IN
        SELECT DISTINCT c.agent_id FROM containers c
        JOIN agent_inventory i USING (agent_id)
        WHERE c.container_key = ANY(keys)
    LOOP
        changed := changed || dockping_refresh_absence(agent, keys);
    END LOOP;
    RETURN changed;
END
$$;

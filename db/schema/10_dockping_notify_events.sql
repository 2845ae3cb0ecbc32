-- `NOTIFY dockping_events` for committed events: the agent, the changed targets and the
-- changed containers, each list null past 500 ids (a payload must stay under 8000 bytes;
-- a listener given null reloads everything).
CREATE OR REPLACE FUNCTION dockping_notify_events(p_agent text, p_targets integer[],
                                                  p_containers integer[])
RETURNS void LANGUAGE sql AS $$
    SELECT pg_notify('dockping_events', json_build_object(
        'agent', p_agent,
        'targets', CASE WHEN t.ids IS NULL OR cardinality(t.ids) <= 500
                        THEN to_json(coalesce(t.ids, '{}')) END,
        'containers', CASE WHEN c.ids IS NULL OR cardinality(c.ids) <= 500
                           THEN to_json(coalesce(c.ids, '{}')) END)::text)
    FROM (SELECT ARRAY(SELECT DISTINCT unnest(p_targets) ORDER BY 1) AS ids) AS t,
         (SELECT ARRAY(SELECT DISTINCT unnest(p_containers) ORDER BY 1) AS ids) AS c
$$;

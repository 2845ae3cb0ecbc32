-- The worst of some statuses (unknown for none).
CREATE OR REPLACE FUNCTION dockping_worst_status(statuses text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(
        (SELECT s FROM unnest(statuses) s ORDER BY dockping_status_severity(s) DESC LIMIT 1),
        'unknown')
$$;

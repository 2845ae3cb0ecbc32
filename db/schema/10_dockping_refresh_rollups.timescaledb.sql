-- Policies refresh the continuous aggregates here; a refresh cannot run inside a function.
-- The function exists on both backends so that callers need not tell them apart.
CREATE OR REPLACE FUNCTION dockping_refresh_rollups(settled_before timestamptz DEFAULT now())
RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;

-- Refresh the minutes, then the hours, that ended before settled_before; return the rollup
-- rows written. Ingest runs it every database.rollup_interval; `dockping rebuild` and
-- anyone with psql may run it too.
CREATE OR REPLACE FUNCTION dockping_refresh_rollups(settled_before timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    -- One refresher at a time; several ingest processes may each run one.
    PERFORM pg_advisory_xact_lock(dockping_lock('rollups'));
    RETURN dockping_refresh_rollup('rollup_log', 'probe_minute', interval '1 minute',
                                   'rollup_hour_log', settled_before)
         + dockping_refresh_rollup('rollup_hour_log', 'probe_hour', interval '1 hour',
                                   NULL, settled_before);
END $$;

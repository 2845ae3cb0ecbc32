-- A rollup's rows for buckets from lo to hi, width wide, computed from the events: the
-- events' ten-minute buckets are bounded too, so that the scan is a range of either index.
CREATE OR REPLACE FUNCTION dockping_rollup_of(lo timestamptz, hi timestamptz, width interval)
RETURNS TABLE (bucket timestamptz, target_id integer, probes integer, failures integer,
               sum_us bigint, max_us integer, p50_us integer, p95_us integer)
LANGUAGE sql STABLE AS $$
    SELECT date_bin(width, e.time, timestamptz 'epoch'),
           e.target_id,
           count(*)::integer,
           (count(*) FILTER (WHERE e.latency_us < 0))::integer,
           coalesce(sum(e.latency_us) FILTER (WHERE e.latency_us >= 0), 0)::bigint,
           max(e.latency_us) FILTER (WHERE e.latency_us >= 0),
           percentile_disc(0.5) WITHIN GROUP (ORDER BY e.latency_us)
               FILTER (WHERE e.latency_us >= 0),
           percentile_disc(0.95) WITHIN GROUP (ORDER BY e.latency_us)
               FILTER (WHERE e.latency_us >= 0)
    FROM probe_events e
    WHERE e.time >= lo AND e.time < hi
      AND dockping_bucket(e.time) BETWEEN dockping_bucket(lo) AND dockping_bucket(hi)
    GROUP BY 1, 2
$$;

-- Until when a target's last probe vouches for it: the probe, its window (or default_window
-- when its agent sent none), and stale_after. (One timestamp addition per row: the listing
-- computes this for every row it orders or filters by status.)
CREATE OR REPLACE FUNCTION dockping_fresh_until(
    last_probe_at timestamptz, probe_window interval, default_window interval,
    stale_after interval) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT last_probe_at + (coalesce(probe_window, default_window) + stale_after)
$$;

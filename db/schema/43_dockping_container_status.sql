-- Every container that has addresses, with its roll-up: the one container status, over the
-- address statuses.
CREATE OR REPLACE VIEW dockping_container_status AS
SELECT a.container_key,
       dockping_rollup_status(
           count(*) FILTER (WHERE a.status = 'up'),
           count(*) FILTER (WHERE a.status = 'down'),
           count(*) FILTER (WHERE a.status = 'stopped'),
           count(*) FILTER (WHERE a.status = 'stale'),
           count(*) FILTER (WHERE a.status NOT IN ('up', 'down', 'stopped', 'stale', 'gone')),
           count(*) FILTER (WHERE a.status = 'gone')) AS status,
       (count(*) FILTER (WHERE a.status = 'up'))::integer AS addresses_up,
       (count(*) FILTER (WHERE a.status <> 'gone'))::integer AS addresses_total,
       max(a.status_since) FILTER (WHERE a.status <> 'gone') AS status_since
FROM address_rollup a
GROUP BY a.container_key;

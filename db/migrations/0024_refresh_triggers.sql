-- The triggers that keep the listing tables are one function, dockping_refresh_changed()
-- (db/schema/), which refreshes only for rows whose values changed. The five functions it
-- replaces go, and their triggers with them. No table changes.
DROP FUNCTION IF EXISTS dockping_absence_changed() CASCADE;
DROP FUNCTION IF EXISTS dockping_container_listing_changed() CASCADE;
DROP FUNCTION IF EXISTS dockping_containers_changed() CASCADE;
DROP FUNCTION IF EXISTS dockping_lifecycle_changed() CASCADE;
DROP FUNCTION IF EXISTS dockping_targets_changed() CASCADE;

-- The write path: one function, dockping_append_probes() (db/schema/), appends a batch's
-- probe events and folds them into target_state, whatever the batch's shape (one event per
-- target, many per target, late events); `dockping rebuild` refolds every target with it.
-- No table changes: the function it replaces goes.
DROP FUNCTION IF EXISTS dockping_append_probes_once(integer, text, timestamptz[], integer[],
                                                    integer[], boolean, boolean, boolean);

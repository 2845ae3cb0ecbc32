-- What HTTP(S) probes learn beside their outcome, apart from probe_events: its rows stay 16
-- bytes and the TCP-only batch writes what it wrote before. Kept as changes: an http or
-- https probe event has a row here, of its identity (target_id, time), only where its status
-- differs from the one before it (a probe without an answer has a null status) or it brings
-- a certificate expiry other than the last one known (tls_not_after is null in a row that
-- changes only the status). A target answering 200 with the same certificate costs one row,
-- not one per probe. The status of any probe event is the newest row's at or before it; its
-- certificate's expiry the newest non-null one. The connect time is not kept. Partitioned as
-- probe_events, by the same functions (dockping_partitioned lists every partitioned table),
-- so that its partitions are made ahead and dropped whole with the events'; a change older
-- than the retention goes with them.
CREATE TABLE probe_details (
    time            timestamptz NOT NULL,
    target_id       integer NOT NULL,
    http_status     smallint,
    tls_not_after   timestamptz,
    PRIMARY KEY (target_id, time)
) PARTITION BY RANGE (time);

-- The partitions probe_events has already, with the same bounds.
DO $$
DECLARE
    rec record;
BEGIN
    FOR rec IN
        SELECT child.relname AS part, pg_get_expr(child.relpartbound, child.oid) AS bound
        FROM pg_inherits
        JOIN pg_class child ON child.oid = pg_inherits.inhrelid
        WHERE pg_inherits.inhparent = 'probe_events'::regclass
    LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF probe_details %s',
                       replace(rec.part, 'probe_events_', 'probe_details_'), rec.bound);
    END LOOP;
END $$;

-- The error kinds of HTTP(S) probes (dockping/contract.py ERROR_KINDS, in order).
INSERT INTO probe_errors (code, error) VALUES (6, 'http_status'), (7, 'tls'), (8, 'protocol');

-- The latest detail per target: a fold over probe_details, the newest row's status (that of
-- the target's last probe, since every change has its row) and the newest expiry known.
CREATE TABLE target_detail (
    target_id       integer PRIMARY KEY REFERENCES targets,
    changed_at      timestamptz NOT NULL,
    http_status     smallint,
    tls_not_after   timestamptz
);

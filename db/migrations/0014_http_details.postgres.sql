-- What HTTP(S) probes learn beside their outcome, apart from probe_events: its rows stay 16
-- bytes and the TCP-only batch writes what it wrote before. A probe event with an HTTP
-- status, a connect time or a certificate's expiry has a row here of the same identity
-- (target_id, time): 20 bytes without a certificate, 32 with one. Partitioned as
-- probe_events, by the same functions (dockping_partitioned lists every partitioned table),
-- so that its partitions are made ahead and dropped whole with the events'.
CREATE TABLE probe_details (
    time            timestamptz NOT NULL,
    target_id       integer NOT NULL,
    http_status     smallint,
    connect_us      integer,
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

-- The latest detail per target: a fold over probe_details, where the newest event's status
-- and connect time win and the certificate's expiry is the newest one known (a probe that
-- failed before the handshake leaves it). A status belongs to the target's last probe only
-- when probe_at is that probe's time (target_state.last_probe_at): readers check.
CREATE TABLE target_detail (
    target_id       integer PRIMARY KEY REFERENCES targets,
    probe_at        timestamptz NOT NULL,
    http_status     smallint,
    connect_us      integer,
    tls_not_after   timestamptz
) WITH (fillfactor = 50);  -- every HTTP(S) batch updates its targets' rows: room for HOT

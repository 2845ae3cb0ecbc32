-- What HTTP(S) probes learn beside their outcome, apart from probe_events: its rows stay as
-- they were and the TCP-only batch writes what it wrote before. Kept as changes, as in
-- 0014_http_details.postgres.sql (which says how). A hypertable, compressed, kept and
-- dropped as probe_events is.
CREATE TABLE probe_details (
    time            timestamptz NOT NULL,
    target_id       integer NOT NULL,
    http_status     smallint,
    tls_not_after   timestamptz,
    PRIMARY KEY (target_id, time)
);
SELECT create_hypertable('probe_details', 'time', chunk_time_interval => interval '1 day');
ALTER TABLE probe_details SET (timescaledb.compress, timescaledb.compress_segmentby = 'target_id',
                               timescaledb.compress_orderby = 'time');

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

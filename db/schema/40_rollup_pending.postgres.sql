-- Buckets whose stored rollup is not current, with their width.
CREATE OR REPLACE VIEW rollup_pending AS
SELECT DISTINCT bucket, interval '1 minute' AS width FROM rollup_log
UNION ALL
SELECT bucket, interval '1 hour' FROM (
    SELECT date_bin(interval '1 hour', bucket, timestamptz 'epoch') AS bucket FROM rollup_log
    UNION
    SELECT bucket FROM rollup_hour_log
) hours;

-- Per-target latency per minute, in readable units: the same view on both backends.
CREATE OR REPLACE VIEW latency_minute AS
SELECT target_id, bucket, probes, failures, avg_ms, p50_ms, p95_ms, max_ms
FROM latency_rollups WHERE width = interval '1 minute';

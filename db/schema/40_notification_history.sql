-- The public view of every notification sent or failed, shown on a target's detail page.
CREATE OR REPLACE VIEW notification_history AS
SELECT target_id,
       time,
       kind,
       channel,
       status,
       CASE WHEN error IS NULL THEN message ELSE message || ' [' || error || ']' END AS message
FROM notification_events;

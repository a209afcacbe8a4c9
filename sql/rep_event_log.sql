-- Table rep_event_log: one partition per refresh quarter; columns follow the frame the
-- pipeline writes (see README, "Tables"), after a leading refresh_quarter DATE.

-- name: create
CREATE TABLE IF NOT EXISTS rep_event_log AS
SELECT CAST(NULL AS DATE) AS refresh_quarter, * FROM incoming LIMIT 0;

-- name: delete_partition
DELETE FROM rep_event_log WHERE refresh_quarter = ?;

-- name: insert_partition
INSERT INTO rep_event_log BY NAME
SELECT CAST(? AS DATE) AS refresh_quarter, * FROM incoming;

-- name: select_partition
SELECT * EXCLUDE (refresh_quarter) FROM rep_event_log WHERE refresh_quarter = ? ORDER BY event_id;

-- Table plan_metrics: one partition per refresh quarter; columns follow the frame the
-- pipeline writes (see README, "Tables"), after a leading refresh_quarter DATE.

-- name: create
CREATE TABLE IF NOT EXISTS plan_metrics AS
SELECT CAST(NULL AS DATE) AS refresh_quarter, * FROM incoming LIMIT 0;

-- name: delete_partition
DELETE FROM plan_metrics WHERE refresh_quarter = ?;

-- name: insert_partition
INSERT INTO plan_metrics BY NAME
SELECT CAST(? AS DATE) AS refresh_quarter, * FROM incoming;

-- name: select_partition
SELECT * EXCLUDE (refresh_quarter) FROM plan_metrics WHERE refresh_quarter = ? ORDER BY metric;

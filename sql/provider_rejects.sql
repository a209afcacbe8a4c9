-- Table provider_rejects: one partition per refresh quarter; columns follow the frame the
-- pipeline writes (see README, "Tables"), after a leading refresh_quarter DATE.

-- name: create
CREATE TABLE IF NOT EXISTS provider_rejects AS
SELECT CAST(NULL AS DATE) AS refresh_quarter, * FROM incoming LIMIT 0;

-- name: delete_partition
DELETE FROM provider_rejects WHERE refresh_quarter = ?;

-- name: insert_partition
INSERT INTO provider_rejects BY NAME
SELECT CAST(? AS DATE) AS refresh_quarter, * FROM incoming;

-- name: select_partition
SELECT * EXCLUDE (refresh_quarter) FROM provider_rejects WHERE refresh_quarter = ? ORDER BY source, reason, npi;

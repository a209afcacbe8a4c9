-- Table scored_clusters: one partition per refresh quarter; columns follow the frame the
-- pipeline writes (see README, "Tables"), after a leading refresh_quarter DATE.

-- name: create
CREATE TABLE IF NOT EXISTS scored_clusters AS
SELECT CAST(NULL AS DATE) AS refresh_quarter, * FROM incoming LIMIT 0;

-- name: delete_partition
DELETE FROM scored_clusters WHERE refresh_quarter = ?;

-- name: insert_partition
INSERT INTO scored_clusters BY NAME
SELECT CAST(? AS DATE) AS refresh_quarter, * FROM incoming;

-- name: select_partition
SELECT * EXCLUDE (refresh_quarter) FROM scored_clusters WHERE refresh_quarter = ? ORDER BY cluster_id;

-- Metro reference table ref_cbsa_delineation: one partition per refresh quarter, with its vintage.

-- name: create
CREATE TABLE IF NOT EXISTS ref_cbsa_delineation AS
SELECT CAST(NULL AS DATE) AS refresh_quarter, * FROM incoming LIMIT 0;

-- name: delete_partition
DELETE FROM ref_cbsa_delineation WHERE refresh_quarter = ?;

-- name: insert_partition
INSERT INTO ref_cbsa_delineation BY NAME
SELECT CAST(? AS DATE) AS refresh_quarter, * FROM incoming;

-- name: select_partition
SELECT * EXCLUDE (refresh_quarter) FROM ref_cbsa_delineation WHERE refresh_quarter = ? ORDER BY county_fips;

-- Metro reference table ref_hud_zip_cbsa: one partition per refresh quarter, with its vintage.

-- name: create
CREATE TABLE IF NOT EXISTS ref_hud_zip_cbsa AS
SELECT CAST(NULL AS DATE) AS refresh_quarter, * FROM incoming LIMIT 0;

-- name: delete_partition
DELETE FROM ref_hud_zip_cbsa WHERE refresh_quarter = ?;

-- name: insert_partition
INSERT INTO ref_hud_zip_cbsa BY NAME
SELECT CAST(? AS DATE) AS refresh_quarter, * FROM incoming;

-- name: select_partition
SELECT * EXCLUDE (refresh_quarter) FROM ref_hud_zip_cbsa WHERE refresh_quarter = ? ORDER BY zip5;

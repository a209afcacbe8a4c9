-- The persistent geocode cache, keyed by the normalized practice address.
-- Not partitioned: a later quarter reuses every address an earlier one geocoded.

-- name: create
CREATE TABLE IF NOT EXISTS geocode_cache AS
SELECT * FROM incoming LIMIT 0;

-- name: select_all
SELECT * FROM geocode_cache ORDER BY address_key;

-- name: delete_incoming
DELETE FROM geocode_cache WHERE address_key IN (SELECT address_key FROM incoming);

-- name: insert_incoming
INSERT INTO geocode_cache BY NAME SELECT * FROM incoming;

-- The persistent geocode cache, keyed by the normalized practice address.
-- Not partitioned: a later quarter reuses every address an earlier one geocoded.

-- name: create
CREATE TABLE IF NOT EXISTS geocode_cache AS
SELECT * FROM incoming LIMIT 0;

-- name: select_all
SELECT * FROM geocode_cache ORDER BY address_key;

-- name: upsert
INSERT OR REPLACE INTO geocode_cache BY NAME SELECT * FROM incoming;

-- name: add_primary_key
CREATE UNIQUE INDEX IF NOT EXISTS geocode_cache_address_key ON geocode_cache (address_key);

-- name: table_exists
SELECT count(*) > 0 FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?;

-- name: table_columns
SELECT column_name FROM information_schema.columns
WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position;

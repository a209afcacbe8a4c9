-- Every alignment ever made (quarter, run and trigger), kept across re-runs.
-- alignment_id is deterministic (quarter + trigger), so re-running the same
-- trigger replaces its row instead of adding a duplicate.

-- name: create
CREATE TABLE IF NOT EXISTS alignment_history AS
SELECT * FROM incoming LIMIT 0;

-- name: delete_alignment
DELETE FROM alignment_history WHERE alignment_id = ?;

-- name: insert
INSERT INTO alignment_history BY NAME SELECT * FROM incoming;

-- name: latest_before
-- The newest alignment older than the one being made: an earlier trigger of
-- the same quarter, or the latest of an earlier quarter.
SELECT alignment_id, refresh_quarter, trigger, created_at
FROM alignment_history
WHERE alignment_id <> ? AND refresh_quarter <= ?
ORDER BY refresh_quarter DESC, created_at DESC, alignment_id DESC
LIMIT 1;

-- name: history
SELECT * FROM alignment_history ORDER BY refresh_quarter, created_at, alignment_id;

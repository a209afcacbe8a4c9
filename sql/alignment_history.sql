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
-- The live alignment a new one starts from: the newest one that passed its
-- blocking guardrails (status 'live'), of this quarter or an earlier one.
-- A plan that failed them (status 'blocked') is kept for inspection only.
SELECT alignment_id, refresh_quarter, trigger, created_at
FROM alignment_history
WHERE alignment_id <> ? AND refresh_quarter <= ? AND status = 'live'
ORDER BY refresh_quarter DESC, created_at DESC, alignment_id DESC
LIMIT 1;

-- name: recorded
-- An alignment made before under the same id (a re-run): what it started from.
SELECT alignment_id, previous_alignment_id FROM alignment_history WHERE alignment_id = ?;

-- name: history
SELECT * FROM alignment_history ORDER BY refresh_quarter, created_at, alignment_id;

-- The provider assignments of every alignment in alignment_history.

-- name: create
CREATE TABLE IF NOT EXISTS alignment_assignment_history AS
SELECT * FROM incoming LIMIT 0;

-- name: delete_alignment
DELETE FROM alignment_assignment_history WHERE alignment_id = ?;

-- name: insert
INSERT INTO alignment_assignment_history BY NAME SELECT * FROM incoming;

-- name: select_alignment
SELECT npi, territory_id, rep_id, unit_id, opportunity_score
FROM alignment_assignment_history WHERE alignment_id = ? ORDER BY npi;

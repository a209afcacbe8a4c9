-- The territories (score, target, deviation) of every alignment in alignment_history,
-- for before/after charts and trends.

-- name: create
CREATE TABLE IF NOT EXISTS alignment_territory_history AS
SELECT * FROM incoming LIMIT 0;

-- name: delete_alignment
DELETE FROM alignment_territory_history WHERE alignment_id = ?;

-- name: insert
INSERT INTO alignment_territory_history BY NAME SELECT * FROM incoming;

-- name: select_alignment
SELECT territory_id, rep_id, opportunity_score, target_score, deviation, provider_count
FROM alignment_territory_history WHERE alignment_id = ? ORDER BY territory_id;

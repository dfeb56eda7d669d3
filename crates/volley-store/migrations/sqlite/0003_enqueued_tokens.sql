-- Scheduling under an enqueued-token budget (issue #5): each batch keeps the estimated input
-- tokens of its requests, so the engine can sum what one model has enqueued at the provider
-- from the batch rows alone. Open batches made before this version are filled in here.
ALTER TABLE batches ADD COLUMN est_input_tokens BIGINT NOT NULL DEFAULT 0;
UPDATE batches SET est_input_tokens = (
    SELECT COALESCE(SUM(r.est_input_tokens), 0) FROM requests r
    WHERE r.batch_id = batches.id AND r.state = 'batched')
WHERE state IN ('planned', 'submitting', 'submitted');

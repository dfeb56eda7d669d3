-- Write-ahead intents for cancels and file deletions (issue #6), next to submits.
--
-- 'cancel': recorded before a cancel call (or before a planned batch is closed as canceled,
-- which also claims the batch: no submit intent can open while it is open); 'delete':
-- recorded before a collected batch's files (OpenAI input/output/error files, Gemini uploads)
-- are deleted, with the files in `detail` (JSON), so a crash between collection and delete
-- leaves an open intent that the next resume or cancel carries out. An open intent means
-- "the call may or may not have happened"; `outcome` 'done' closes a cancel or a delete.
--
-- SQLite cannot alter a CHECK constraint, so the small intents table is rebuilt. Nothing
-- references it, so no foreign key needs switching off.
CREATE TABLE intents_v4 (
    id           INTEGER PRIMARY KEY,
    run_id       TEXT NOT NULL REFERENCES runs (id),
    batch_id     TEXT NOT NULL REFERENCES batches (id),
    action       TEXT NOT NULL CHECK (action IN ('submit', 'cancel', 'delete')),
    started_at   TEXT NOT NULL,
    confirmed_at TEXT,
    outcome      TEXT CHECK (outcome IN ('created', 'aborted', 'done')),
    detail       TEXT
);
INSERT INTO intents_v4 (id, run_id, batch_id, action, started_at, confirmed_at, outcome)
    SELECT id, run_id, batch_id, action, started_at, confirmed_at, outcome FROM intents;
DROP TABLE intents;
ALTER TABLE intents_v4 RENAME TO intents;
-- At most one open intent per batch, whatever its action: a batch is being created,
-- cancelled or cleaned up, never two at once.
CREATE UNIQUE INDEX intents_open ON intents (batch_id) WHERE outcome IS NULL;
-- Open intents of a run, found on resume and cancel.
CREATE INDEX intents_run_open ON intents (run_id) WHERE outcome IS NULL;

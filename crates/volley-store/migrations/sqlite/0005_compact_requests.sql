-- Compact per-request tables (issue #7: a million requests end to end in under a minute).
--
-- The per-request tables were keyed by the run id text and carried provider and model names,
-- and every request row was written four or five times over its life (import, batch, attempt
-- count, result, state). Here they are keyed by small integers, hold only what changes in
-- narrow rows, and are written at import, when batched, and when decided:
--
-- * `runs.key`, `batches.key`, `groups.key`: integer keys for the per-request tables.
-- * `requests`: one narrow row per request; `state` is a small integer (see `state` below);
--   `retries` counts confirmed submissions that did not decide it (the attempt number of its
--   next submission is `retries + 1`), so confirming a batch writes the batch row only.
-- * `request_bodies`: the custom id and the request JSON, written once.
-- * `results`: the final line and its cost; its status lives in `requests.state`.
-- * `attempts`: only submissions that sent a request back for another try (the final one is
--   in `results`).
-- * The unique index on (run, custom id) is gone: custom ids derive from the input ids, which
--   the import has already checked are unique (decisions 0004, 0011).
--
-- `requests.state`: 0 pending, 1 batched (in `batch`), then the final status:
-- 2 succeeded, 3 failed, 4 canceled, 5 expired, 6 skipped. `batch` stays set on a decided
-- request (the batch that decided it), so a partly collected batch still lists it.

ALTER TABLE runs ADD COLUMN key INTEGER;
UPDATE runs SET key = rowid;
CREATE UNIQUE INDEX runs_key ON runs (key);

ALTER TABLE batches ADD COLUMN key INTEGER;
UPDATE batches SET key = rowid;
CREATE UNIQUE INDEX batches_key ON batches (key);

CREATE TABLE groups (
    key      INTEGER PRIMARY KEY,
    provider TEXT NOT NULL,
    model    TEXT NOT NULL,
    UNIQUE (provider, model)
);
INSERT INTO groups (provider, model) SELECT DISTINCT provider, model FROM requests;

CREATE TABLE requests_v4 (
    run              INTEGER NOT NULL,
    seq              INTEGER NOT NULL,
    grp              INTEGER NOT NULL,
    state            INTEGER NOT NULL DEFAULT 0 CHECK (state BETWEEN 0 AND 6),
    batch            INTEGER,
    retries          INTEGER NOT NULL DEFAULT 0,
    est_input_tokens INTEGER NOT NULL,
    max_tokens       INTEGER NOT NULL,
    wire_bytes       INTEGER NOT NULL,
    worst_cost_usd   REAL NOT NULL,
    PRIMARY KEY (run, seq)
) WITHOUT ROWID;
INSERT INTO requests_v4 (run, seq, grp, state, batch, retries, est_input_tokens, max_tokens,
                         wire_bytes, worst_cost_usd)
SELECT ru.key, r.seq, g.key,
       CASE r.state WHEN 'pending' THEN 0 WHEN 'batched' THEN 1 WHEN 'succeeded' THEN 2
                    WHEN 'failed' THEN 3 WHEN 'canceled' THEN 4 WHEN 'expired' THEN 5
                    ELSE 6 END,
       b.key,
       -- Confirmed submissions that did not decide it: all of them for a pending request,
       -- all but the current one for a batched request whose batch the provider has, and all
       -- but the deciding one for a decided request.
       MAX(0, r.attempts - CASE
           WHEN r.state = 'batched' AND b.state IN ('submitted', 'collected') THEN 1
           WHEN r.state NOT IN ('pending', 'batched') THEN 1
           ELSE 0 END),
       r.est_input_tokens, r.max_tokens, r.wire_bytes, r.worst_cost_usd
FROM requests r
JOIN runs ru ON ru.id = r.run_id
JOIN groups g ON g.provider = r.provider AND g.model = r.model
LEFT JOIN batches b ON b.id = r.batch_id;

CREATE TABLE request_bodies_v4 (
    run       INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    body      TEXT NOT NULL,
    PRIMARY KEY (run, seq)
) WITHOUT ROWID;
INSERT INTO request_bodies_v4 (run, seq, custom_id, body)
SELECT ru.key, r.seq, r.custom_id, b.body
FROM requests r
JOIN runs ru ON ru.id = r.run_id
JOIN request_bodies b ON b.run_id = r.run_id AND b.seq = r.seq;

CREATE TABLE results_v4 (
    run      INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    line     TEXT NOT NULL,
    PRIMARY KEY (run, seq)
) WITHOUT ROWID;
INSERT INTO results_v4 (run, seq, cost_usd, line)
SELECT ru.key, r.seq, r.cost_usd, r.line FROM results r JOIN runs ru ON ru.id = r.run_id;

CREATE TABLE attempts_v4 (
    run     INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    batch   INTEGER,
    error   TEXT,
    PRIMARY KEY (run, seq, attempt)
) WITHOUT ROWID;
INSERT INTO attempts_v4 (run, seq, attempt, batch, error)
SELECT ru.key, a.seq, a.attempt, b.key, a.error
FROM attempts a
JOIN runs ru ON ru.id = a.run_id
LEFT JOIN batches b ON b.id = a.batch_id
WHERE a.status = 'retry';

DROP TABLE requests;
DROP TABLE request_bodies;
DROP TABLE results;
DROP TABLE attempts;
ALTER TABLE requests_v4 RENAME TO requests;
ALTER TABLE request_bodies_v4 RENAME TO request_bodies;
ALTER TABLE results_v4 RENAME TO results;
ALTER TABLE attempts_v4 RENAME TO attempts;

-- The planner pages the pending requests of one group in input order. Partial: a request
-- leaves it when batched and comes back only when sent back for another try.
CREATE INDEX requests_pending ON requests (run, grp, seq) WHERE state = 0;
-- A batch's requests are found by its seq range on the primary key (`batches.first_seq`,
-- `last_seq`), so no index on `batch` is kept.

-- A batch's cost now grows as its results are recorded (closing it sums nothing); open
-- batches start from the results they already have.
UPDATE batches SET cost_usd = (
    SELECT COALESCE(SUM(res.cost_usd), 0.0) FROM requests r
    JOIN results res ON res.run = r.run AND res.seq = r.seq
    WHERE r.batch = batches.key AND r.state >= 2)
WHERE state IN ('planned', 'submitting', 'submitted');

-- volley store, schema version 1.
--
-- Timestamps are RFC 3339 text in UTC with millisecond precision (fixed width, so they sort).
-- Money is USD as double precision. Nothing here ever holds an API key.
--
-- Foreign keys guard the low-volume tables. The per-request rows (requests, request_bodies,
-- results, attempts) carry none: the store writes them only in transactions that have just
-- checked or created the run, batch and request they point to, and a foreign key would cost
-- a lookup per row on the import, planning and collection paths of a million requests.

-- One run: an imported input file and its options.
CREATE TABLE runs (
    id           TEXT PRIMARY KEY,
    created_at   TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN
                     ('planning', 'running', 'completed', 'interrupted', 'canceled', 'failed')),
    input        TEXT,
    fingerprint  TEXT,
    out          TEXT,
    options_json TEXT NOT NULL,
    -- NULL until the import finished; a run is resumable only once it is set.
    total        BIGINT,
    updated_at   TEXT NOT NULL
);
CREATE INDEX runs_fingerprint ON runs (fingerprint, created_at);

-- One provider batch as volley tracks it. `seq` numbers the batches of a run from 1.
CREATE TABLE batches (
    id                TEXT PRIMARY KEY,
    run_id            TEXT NOT NULL REFERENCES runs (id),
    seq               BIGINT NOT NULL,
    provider          TEXT NOT NULL,
    model             TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN
                          ('planned', 'submitting', 'submitted', 'collected', 'rejected')),
    request_count     BIGINT NOT NULL DEFAULT 0,
    first_seq         BIGINT NOT NULL,
    last_seq          BIGINT NOT NULL,
    provider_batch_id TEXT,
    provider_status   TEXT,
    submit_started_at TEXT,
    submitted_at      TEXT,
    closed_at         TEXT,
    cost_usd          DOUBLE PRECISION NOT NULL DEFAULT 0,
    UNIQUE (run_id, seq)
);

-- One input request. `state` is 'pending' (waiting for a batch), 'batched' (in `batch_id`) or
-- the final result status. The request body lives in `request_bodies`: SQLite rewrites a whole
-- row on every UPDATE, and a request's state changes three or four times.
CREATE TABLE requests (
    run_id           TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    id               TEXT NOT NULL,
    custom_id        TEXT NOT NULL,
    provider         TEXT NOT NULL,
    model            TEXT NOT NULL,
    est_input_tokens BIGINT NOT NULL,
    max_tokens       BIGINT NOT NULL,
    wire_bytes       BIGINT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending' CHECK (state IN
                         ('pending', 'batched',
                          'succeeded', 'failed', 'canceled', 'expired', 'skipped')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    batch_id         TEXT,
    PRIMARY KEY (run_id, seq),
    UNIQUE (run_id, custom_id)
);
-- The planner pages pending requests of one provider and model in seq order. Partial: a
-- request leaves it when batched and never comes back unless retried.
CREATE INDEX requests_pending ON requests (run_id, provider, model, seq) WHERE state = 'pending';
-- The requests of a batch, in seq order. Partial: unbatched requests cost nothing here.
CREATE INDEX requests_batch ON requests (batch_id, seq) WHERE batch_id IS NOT NULL;

-- The request as JSON (volley_types::Request), written once at import.
CREATE TABLE request_bodies (
    run_id TEXT NOT NULL,
    seq    BIGINT NOT NULL,
    body   TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

-- Requests and result costs per final status and run, kept by the transactions that store the
-- results, so counting and pricing a run of a million requests reads a handful of rows.
CREATE TABLE run_counts (
    run_id   TEXT NOT NULL REFERENCES runs (id),
    status   TEXT NOT NULL,
    n        BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, status)
) WITHOUT ROWID;

-- The final result line of a request.
CREATE TABLE results (
    run_id   TEXT NOT NULL,
    seq      BIGINT NOT NULL,
    batch_id TEXT,
    status   TEXT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    line     TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- Every submission of a request that produced an outcome: a final status or 'retry'.
CREATE TABLE attempts (
    run_id   TEXT NOT NULL,
    seq      BIGINT NOT NULL,
    attempt  INTEGER NOT NULL,
    batch_id TEXT,
    status   TEXT NOT NULL,
    error    TEXT,
    PRIMARY KEY (run_id, seq, attempt)
) WITHOUT ROWID;

-- Money booked: 'actual' when a batch closes; 'reserve' and 'release' for the cost cap.
CREATE TABLE ledger (
    id         INTEGER PRIMARY KEY,
    run_id     TEXT NOT NULL REFERENCES runs (id),
    batch_id   TEXT REFERENCES batches (id),
    kind       TEXT NOT NULL CHECK (kind IN ('actual', 'reserve', 'release')),
    amount_usd DOUBLE PRECISION NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX ledger_run ON ledger (run_id);
-- A batch's actual cost is booked once, however often it is closed.
CREATE UNIQUE INDEX ledger_actual_once ON ledger (batch_id) WHERE kind = 'actual';

-- Write-ahead intents: recorded before a side effect at a provider, closed when its outcome is
-- known. An intent with no outcome means "the call may or may not have happened".
CREATE TABLE intents (
    id           INTEGER PRIMARY KEY,
    run_id       TEXT NOT NULL REFERENCES runs (id),
    batch_id     TEXT NOT NULL REFERENCES batches (id),
    action       TEXT NOT NULL CHECK (action IN ('submit')),
    started_at   TEXT NOT NULL,
    confirmed_at TEXT,
    outcome      TEXT CHECK (outcome IN ('created', 'aborted'))
);
-- At most one open intent per batch.
CREATE UNIQUE INDEX intents_open ON intents (batch_id) WHERE outcome IS NULL;

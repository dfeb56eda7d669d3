-- Request bodies and result lines in rowid tables (issue #7).
--
-- Migration 0005 made them WITHOUT ROWID tables keyed by (run, seq). Their rows are a few
-- hundred bytes each, and a WITHOUT ROWID table keeps whole rows in its interior pages too, so
-- those trees were deep and narrow (about ten rows per interior page): every read and insert
-- walked more pages than the cache holds. SQLite's own advice is a rowid table for rows over
-- about a twentieth of a page. Here both are rowid tables whose integer key packs the two:
--
--     id = run * 4294967296 + seq        (seq < 2^32; the store refuses larger)
--
-- so a run's rows are one contiguous id range in input order, interior pages hold only
-- integers, and a lookup is a rowid search.

CREATE TABLE request_bodies_v6 (
    id        INTEGER PRIMARY KEY,
    custom_id TEXT NOT NULL,
    body      TEXT NOT NULL
);
INSERT INTO request_bodies_v6 (id, custom_id, body)
SELECT run * 4294967296 + seq, custom_id, body FROM request_bodies ORDER BY run, seq;

CREATE TABLE results_v6 (
    id       INTEGER PRIMARY KEY,
    cost_usd REAL NOT NULL,
    line     TEXT NOT NULL
);
INSERT INTO results_v6 (id, cost_usd, line)
SELECT run * 4294967296 + seq, cost_usd, line FROM results ORDER BY run, seq;

DROP TABLE request_bodies;
DROP TABLE results;
ALTER TABLE request_bodies_v6 RENAME TO request_bodies;
ALTER TABLE results_v6 RENAME TO results;

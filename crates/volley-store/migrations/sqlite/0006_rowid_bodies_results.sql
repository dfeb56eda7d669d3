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
--
-- `request_bodies.view` is the request's collection view (`volley_core::store::
-- collection_view`: id, max_tokens, citations, metadata, and `{}` for a schema), written at
-- import so collecting a batch reads it as it is instead of parsing every body in SQL. Rows
-- of older stores get it cut out of their body here, as schema 5 did at each collection.

CREATE TABLE request_bodies_v6 (
    id        INTEGER PRIMARY KEY,
    custom_id TEXT NOT NULL,
    view      TEXT NOT NULL,
    body      TEXT NOT NULL
);
INSERT INTO request_bodies_v6 (id, custom_id, view, body)
SELECT b.run * 4294967296 + b.seq, b.custom_id,
       '{"id":' || (b.body -> '$.id')
       || ',"model":"","messages":[],"max_tokens":' || (b.body -> '$.max_tokens')
       || CASE WHEN (b.body -> '$.schema') IS NULL THEN '' ELSE ',"schema":{}' END
       || CASE WHEN (b.body -> '$.citations') = 'true' THEN ',"citations":true' ELSE '' END
       || COALESCE(',"metadata":' || (b.body -> '$.metadata'), '') || '}',
       b.body
FROM request_bodies b ORDER BY b.run, b.seq;

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

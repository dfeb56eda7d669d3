-- The pending index covers what planning reads (issue #7).
--
-- The planner pages through a group's pending requests for their seq, wire size, estimated
-- tokens and max_tokens. With the index on (run, grp, seq) alone, each entry cost a lookup
-- in `requests` for the other three; carrying them in the index makes those pages index-only.
-- The entry grows by a few bytes, and the index still holds pending requests only.

DROP INDEX requests_pending;
CREATE INDEX requests_pending
    ON requests (run, grp, seq, wire_bytes, est_input_tokens, max_tokens) WHERE state = 0;

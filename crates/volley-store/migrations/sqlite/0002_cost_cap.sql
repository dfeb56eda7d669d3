-- The hard cost cap (issue #5): every request's worst case, and the worst case each batch holds
-- reserved while it is at the provider. Reservations and their release are also booked in the
-- ledger ('reserve' / 'release'), so the cap holds across restarts and across processes.
ALTER TABLE requests ADD COLUMN worst_cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN reserved_usd DOUBLE PRECISION NOT NULL DEFAULT 0;

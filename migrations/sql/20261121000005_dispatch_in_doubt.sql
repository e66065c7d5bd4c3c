-- Expired leases are put back as ready rows flagged in_doubt (the worker died mid-call), so that
-- claiming only ever reads the `ready` partial index and a 1M-row queue is never scanned.
ALTER TABLE dispatch_queue ADD COLUMN in_doubt boolean NOT NULL DEFAULT false;

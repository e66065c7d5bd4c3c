-- The webhook inbox becomes a log the processor reads in order, like a projector reads `events`
-- (docs/decisions/0033-webhook-inbox-log.md). Marking every post processed rewrote the whole row
-- (body included) and its index entries: as much WAL as storing the post in the first place, and
-- the largest single cost of receipt ingestion. Now a post's row is written once and never
-- updated:
--
-- * the processor keeps its position in `webhook_inbox_cursor` (commit order: `tx_id`, then `id`);
-- * what processing concluded goes into the narrow, insert-only `webhook_inbox_outcomes`;
-- * rows that must be tried again (receipts for ids Herald does not know yet, failures, replays)
--   wait in `webhook_inbox_retries` with their attempts, next attempt and last error;
-- * `webhook_inbox_status` shows all of it per post, with the columns the table used to have.

-- The transaction that stored the post. Identity order is not commit order (several writers insert
-- concurrently); (tx_id, id) read below the oldest running transaction is (see the projectors).
-- Rows stored before this migration all get this migration's transaction id.
ALTER TABLE webhook_inbox ADD COLUMN tx_id xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX webhook_inbox_log ON webhook_inbox (tx_id, id);

CREATE TABLE webhook_inbox_outcomes
(
    inbox_id     bigint PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now(),
    -- e.g. `Read receipt for 1 message(s)`, `ignored: ChatPresence`
    note         text        NOT NULL
);

CREATE TABLE webhook_inbox_retries
(
    inbox_id        bigint PRIMARY KEY,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text
);
CREATE INDEX webhook_inbox_retries_due ON webhook_inbox_retries (next_attempt_at);

CREATE TABLE webhook_inbox_cursor
(
    name       text PRIMARY KEY,
    tx_id      xid8        NOT NULL,
    id         bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- What was processed keeps its outcome; what was pending waits as a retry, due when it was due.
INSERT INTO webhook_inbox_outcomes (inbox_id, processed_at, note)
SELECT id, processed_at, COALESCE(note, 'processed')
  FROM webhook_inbox
 WHERE processed_at IS NOT NULL;
INSERT INTO webhook_inbox_retries (inbox_id, attempts, next_attempt_at, last_error)
SELECT id, attempts, next_attempt_at, last_error
  FROM webhook_inbox
 WHERE processed_at IS NULL;
-- The log starts after every row stored so far.
INSERT INTO webhook_inbox_cursor (name, tx_id, id)
VALUES ('processor', pg_current_xact_id(), COALESCE((SELECT max(id) FROM webhook_inbox), 0));

DROP INDEX webhook_inbox_pending;
DROP INDEX webhook_inbox_processed;
ALTER TABLE webhook_inbox
    DROP COLUMN processed_at,
    DROP COLUMN note,
    DROP COLUMN attempts,
    DROP COLUMN next_attempt_at,
    DROP COLUMN last_error;

-- One line per post: `processed_at` is NULL while it is pending (not read yet, or due for a retry).
CREATE VIEW webhook_inbox_status AS
SELECT w.id,
       w.source,
       w.session_id,
       w.tenant_id,
       w.event_type,
       w.received_at,
       CASE WHEN r.inbox_id IS NULL THEN o.processed_at END AS processed_at,
       o.note,
       COALESCE(r.attempts, 0)                              AS attempts,
       r.next_attempt_at,
       r.last_error
  FROM webhook_inbox w
  LEFT JOIN webhook_inbox_outcomes o ON o.inbox_id = w.id
  LEFT JOIN webhook_inbox_retries r ON r.inbox_id = w.id;

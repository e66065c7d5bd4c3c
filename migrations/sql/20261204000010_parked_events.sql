-- Events a projector could not apply on their own (docs/decisions/0035-poison-events-are-parked.md).
-- A batch that fails is split down to the failing event; that event is parked here, in the
-- transaction that moves the projector's checkpoint past it, and every event after it is applied.
-- `herald projections parked` lists them; `herald projections retry` asks for them to be applied
-- again (`retry_requested_at`), by the instance that runs the projector or by the command itself.
CREATE TABLE parked_events
(
    projector          text        NOT NULL,
    tx_id              bigint      NOT NULL,
    global_position    bigint      NOT NULL,
    aggregate_type     text        NOT NULL,
    aggregate_id       text        NOT NULL,
    sequence           bigint      NOT NULL,
    event_type         text        NOT NULL,
    -- the error of the last attempt (the first one when it was parked, then each retry's)
    error              text        NOT NULL,
    parked_at          timestamptz NOT NULL DEFAULT now(),
    retries            integer     NOT NULL DEFAULT 0,
    retried_at         timestamptz,
    retry_requested_at timestamptz,
    PRIMARY KEY (projector, global_position)
);
CREATE INDEX parked_events_retry_requested ON parked_events (projector)
    WHERE retry_requested_at IS NOT NULL;

-- A webhook post that keeps failing on its own stops being retried after a number of attempts
-- (InboxConfig::park_after_attempts): it stays in webhook_inbox_retries, parked, until an operator
-- retries it (`herald projections retry --inbox`).
ALTER TABLE webhook_inbox_retries ADD COLUMN parked_at timestamptz;

CREATE OR REPLACE VIEW webhook_inbox_status AS
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
       r.last_error,
       r.parked_at
  FROM webhook_inbox w
  LEFT JOIN webhook_inbox_outcomes o ON o.inbox_id = w.id
  LEFT JOIN webhook_inbox_retries r ON r.inbox_id = w.id;

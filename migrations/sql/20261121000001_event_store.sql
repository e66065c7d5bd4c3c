-- The event store. Columns and primary key are exactly postgres-es 0.5's, so cqrs-es reads and writes
-- this table unchanged (postgres-es names its columns on insert, so the extra columns with defaults
-- are safe). Herald adds a global order for its projectors:
--   global_position: identity order (NOT commit order);
--   tx_id: the writing transaction. Projectors read rows whose tx_id is older than the oldest running
--   transaction, in (tx_id, global_position) order, so a row committed late is never skipped.
CREATE TABLE events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         json                         NOT NULL,
    metadata        json                         NOT NULL,
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    tx_id           xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz                  NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX events_global_order ON events (tx_id, global_position);

-- Wakes projectors once per inserting statement (not per row: a 100k-row insert is one notice).
CREATE FUNCTION herald_notify_events() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('herald_events', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION herald_notify_events();

-- One row per projector: the last (tx_id, global_position) it applied, written in the same
-- transaction as the read-model changes it made.
CREATE TABLE projector_checkpoints
(
    name            text PRIMARY KEY,
    tx_id           bigint      NOT NULL DEFAULT 0,
    global_position bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

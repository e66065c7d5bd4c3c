-- Inbound gateway webhooks (DESIGN decision 11) and receipts matched by message id.

-- The per-session key WuzAPI signs its webhooks with (`x-hmac-signature`). Kept beside the gateway
-- token, in plaintext like it (docs/decisions/0007-webhook-hmac-key-storage.md). NULL for sessions
-- linked before Herald set keys: their posts are accepted unsigned.
ALTER TABLE session_credentials ADD COLUMN hmac_key text;

-- Every post as it arrived, acknowledged once this row is committed. Deduplicated per session by
-- the SHA-256 of the raw body: WuzAPI retries the very same body, so a retry is stored once.
-- `event` is the event object the endpoint already extracted from the encoding (form `jsonData`,
-- JSON or multipart), so the processor never parses encodings again; `body` stays for audits and
-- reprocessing. A row is pending until `processed_at` is set; a failed attempt records
-- `last_error` and is tried again at `next_attempt_at`.
CREATE TABLE webhook_inbox
(
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          text        NOT NULL DEFAULT 'wuzapi',
    session_id      uuid        NOT NULL,
    tenant_id       uuid        NOT NULL,
    body_sha256     bytea       NOT NULL,
    content_type    text        NOT NULL,
    headers         jsonb       NOT NULL DEFAULT '{}',
    body            bytea       NOT NULL,
    event           json        NOT NULL,
    event_type      text        NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz,
    -- what processing concluded, e.g. `applied 2 receipts`, `ignored: ChatPresence`
    note            text,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    UNIQUE (session_id, body_sha256)
);
-- The processor's claim reads only this partial index: processed rows cost nothing.
CREATE INDEX webhook_inbox_pending ON webhook_inbox (next_attempt_at, id) WHERE processed_at IS NULL;
-- Pruning old processed rows.
CREATE INDEX webhook_inbox_processed ON webhook_inbox (processed_at) WHERE processed_at IS NOT NULL;

CREATE FUNCTION herald_notify_webhooks() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('herald_webhooks', '');
    RETURN NULL;
END
$$;
-- Wakes the processor (in any process) as soon as a post is stored; it also polls.
CREATE TRIGGER webhook_inbox_notify
    AFTER INSERT ON webhook_inbox
    FOR EACH STATEMENT EXECUTE FUNCTION herald_notify_webhooks();

-- Write-side index from the WhatsApp message id Herald assigned to the delivery it belongs to,
-- written in the dispatch claim transaction (before the gateway is called, so before any receipt
-- can exist). Receipts are matched here, never through a read model, so projector lag cannot
-- lose one, and only within the session that sent the message.
CREATE TABLE message_index
(
    message_id  text PRIMARY KEY,
    delivery_id text        NOT NULL,
    tenant_id   uuid        NOT NULL,
    session_id  uuid        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Receipts for message ids Herald did not send (sent from the phone, before linking, ...): kept,
-- not an error, for the conversations feature to attach them.
CREATE TABLE unmatched_receipts
(
    session_id  uuid        NOT NULL,
    message_id  text        NOT NULL,
    state       text        NOT NULL,
    at          timestamptz NOT NULL,
    inbox_id    bigint      NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, message_id, state)
);

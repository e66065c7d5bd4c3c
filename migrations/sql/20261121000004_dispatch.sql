-- Gateway credentials of a linked number. Kept out of the event store on purpose: events are
-- forever and are published; a token is a secret that must be deletable.
CREATE TABLE session_credentials
(
    session_id    uuid PRIMARY KEY,
    tenant_id     uuid        NOT NULL,
    gateway_token text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Write-ahead dispatch queue: one row per recipient that still has to be sent. Rows are written in
-- the same transaction as the events that make them due, claimed with FOR UPDATE SKIP LOCKED, leased
-- (committed) before the gateway is called, and deleted in the transaction that records the outcome.
CREATE TABLE dispatch_queue
(
    campaign_id uuid        NOT NULL,
    phone       text        NOT NULL,
    tenant_id   uuid        NOT NULL,
    session_id  uuid        NOT NULL,
    message_id  text        NOT NULL,
    vars        jsonb       NOT NULL DEFAULT '{}',
    state       text        NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'leased')),
    attempts    integer     NOT NULL DEFAULT 0,
    not_before  timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz,
    last_error  text,
    PRIMARY KEY (campaign_id, phone)
);
CREATE INDEX dispatch_queue_ready ON dispatch_queue (not_before) WHERE state = 'ready';
CREATE INDEX dispatch_queue_leased ON dispatch_queue (lease_until) WHERE state = 'leased';

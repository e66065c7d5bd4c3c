-- Outbound webhooks (docs/webhooks-out.md, docs/decisions/0076..0079): a tenant's endpoints, the
-- durable queue of what each endpoint is owed, and the log of every attempt.

-- One URL a tenant asked Herald to push events to. `secret` is the Standard Webhooks signing
-- secret (`whsec_...`): Herald must sign with it, so it is stored as given out, and only ever read
-- by the delivery worker (never selected into an answer after creation or rotation). A rotation
-- keeps the previous secret signing beside the new one until `previous_secret_expires_at`.
CREATE TABLE webhook_endpoints
(
    id                         uuid PRIMARY KEY,
    tenant_id                  uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url                        text        NOT NULL,
    -- event types, or `{*}` for all of them
    events                     text[]      NOT NULL,
    description                text,
    enabled                    boolean     NOT NULL DEFAULT true,
    -- why Herald disabled it (an answer 410), null when enabled or disabled by the tenant
    disabled_reason            text,
    secret                     text        NOT NULL,
    previous_secret            text,
    previous_secret_expires_at timestamptz,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at DESC, id DESC);

-- One message owed to one endpoint. `event_id` is the `webhook-id` header: the same on every
-- attempt (and on a replay of the same event). `payload` is the body exactly as signed.
-- A pending row is due at `next_attempt_at`; a worker that takes it moves `next_attempt_at` past
-- its lease, so a worker that dies mid-attempt leaves it due again when the lease ends.
CREATE TABLE webhook_deliveries
(
    id              uuid PRIMARY KEY,
    endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    tenant_id       uuid        NOT NULL,
    event_id        text        NOT NULL,
    event_type      text        NOT NULL,
    payload         text        NOT NULL,
    -- pending | delivered | failed
    status          text        NOT NULL DEFAULT 'pending',
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending';

-- Every attempt, for `GET /api/v1/webhook-endpoints/{id}/deliveries`.
CREATE TABLE webhook_attempts
(
    id              uuid PRIMARY KEY,
    delivery_id     uuid        NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        text        NOT NULL,
    event_type      text        NOT NULL,
    attempt         integer     NOT NULL,
    -- the receiver's HTTP status; null when no answer came (timeout, refused, network)
    status_code     integer,
    error           text,
    at              timestamptz NOT NULL DEFAULT now(),
    -- when the next attempt is due; null when this was the last one
    next_attempt_at timestamptz
);
CREATE INDEX webhook_attempts_log ON webhook_attempts (endpoint_id, at DESC, id DESC);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id);

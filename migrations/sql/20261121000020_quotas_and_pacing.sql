-- Plans, quotas and pacing (DESIGN decisions 7 and 8; docs/decisions/0009, 0010, 0011).

-- Pacing per linked number: the interval between two sends of one session, and the earliest time
-- the next send may be claimed. A claim locks the row (FOR UPDATE SKIP LOCKED) and moves
-- `next_at` on in the same transaction, so any number of instances share one pace. A session
-- without a row (linked before pacing existed) is unpaced.
CREATE TABLE session_pacing
(
    session_id       uuid PRIMARY KEY,
    tenant_id        uuid        NOT NULL,
    min_interval_ms  integer     NOT NULL CHECK (min_interval_ms >= 0),
    max_interval_ms  integer     NOT NULL CHECK (max_interval_ms >= min_interval_ms),
    next_at          timestamptz NOT NULL DEFAULT '-infinity',
    -- the interval drawn at the last claim, applied again from the end of that send
    last_interval_ms integer     NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- A campaign's own pacing, when it overrides its session's (recurring runs inherit their parent's).
CREATE TABLE campaign_pacing
(
    campaign_id     uuid PRIMARY KEY,
    min_interval_ms integer NOT NULL CHECK (min_interval_ms >= 0),
    max_interval_ms integer NOT NULL CHECK (max_interval_ms >= min_interval_ms)
);

-- Each queue row carries its effective pacing (0/0: unpaced), so the claim of unpaced rows never
-- looks at pacing at all; `pace_from_session` rows follow a change of the session's pacing.
-- `waiting_quota`: the row waits for its tenant's next quota window (or plan change).
-- `content`: a single send's own message (POST /api/v1/messages); NULL for campaign rows, whose
-- message is the campaign's template.
ALTER TABLE dispatch_queue
    ADD COLUMN pace_min_ms       integer NOT NULL DEFAULT 0,
    ADD COLUMN pace_max_ms       integer NOT NULL DEFAULT 0,
    ADD COLUMN pace_from_session boolean NOT NULL DEFAULT true,
    ADD COLUMN waiting_quota     boolean NOT NULL DEFAULT false,
    ADD COLUMN content           jsonb;
DROP INDEX dispatch_queue_ready;
CREATE INDEX dispatch_queue_ready_unpaced ON dispatch_queue (not_before)
    WHERE state = 'ready' AND pace_max_ms = 0;
CREATE INDEX dispatch_queue_ready_paced ON dispatch_queue (not_before)
    WHERE state = 'ready' AND pace_max_ms > 0;
CREATE INDEX dispatch_queue_ready_paced_session ON dispatch_queue (session_id, not_before)
    WHERE state = 'ready' AND pace_max_ms > 0;
CREATE INDEX dispatch_queue_waiting_campaign ON dispatch_queue (campaign_id) WHERE waiting_quota;
CREATE INDEX dispatch_queue_waiting_tenant ON dispatch_queue (tenant_id) WHERE waiting_quota;

-- Messages granted per tenant and quota window. One upsert per tenant and claim grants at most
-- what is left (`last_grant` is what that upsert granted).
CREATE TABLE quota_usage
(
    tenant_id    uuid        NOT NULL,
    window_start timestamptz NOT NULL,
    messages     bigint      NOT NULL DEFAULT 0,
    last_grant   bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, window_start)
);

-- API calls per tenant and window (limited plans only).
CREATE TABLE api_usage
(
    tenant_id    uuid        NOT NULL,
    window_start timestamptz NOT NULL,
    calls        bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, window_start)
);

-- Single sends (POST /api/v1/messages). The recipient is a Delivery `<id>:<phone>` like a
-- campaign's, so status, retries and receipts are the campaign path's; this row says it is a
-- single send and whose.
CREATE TABLE single_messages
(
    id         uuid PRIMARY KEY,
    tenant_id  uuid        NOT NULL,
    session_id uuid        NOT NULL,
    phone      text        NOT NULL,
    kind       text        NOT NULL,
    message_id text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX single_messages_tenant ON single_messages (tenant_id, created_at DESC);

-- Idempotency-Key: the first answer to a (tenant, key), replayed for the same request.
CREATE TABLE idempotency_keys
(
    tenant_id    uuid        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    status       integer     NOT NULL,
    body         jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

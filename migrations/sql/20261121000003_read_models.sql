-- Read models, built by projectors from the event store. They can be truncated and rebuilt.

CREATE TABLE templates
(
    id         uuid PRIMARY KEY,
    tenant_id  uuid        NOT NULL,
    name       text        NOT NULL,
    kind       text        NOT NULL,
    body       text,
    caption    text,
    image_url  text,
    status     text        NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX templates_tenant ON templates (tenant_id, created_at DESC, id);

CREATE TABLE sessions
(
    id         uuid PRIMARY KEY,
    tenant_id  uuid        NOT NULL,
    name       text        NOT NULL,
    status     text        NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX sessions_tenant ON sessions (tenant_id, created_at DESC, id);

CREATE TABLE campaigns
(
    id                  uuid PRIMARY KEY,
    tenant_id           uuid        NOT NULL,
    name                text        NOT NULL,
    status              text        NOT NULL,
    template_id         uuid        NOT NULL,
    session_id          uuid        NOT NULL,
    total_recipients    bigint      NOT NULL,
    count_queued        bigint      NOT NULL DEFAULT 0,
    count_sending       bigint      NOT NULL DEFAULT 0,
    count_sent          bigint      NOT NULL DEFAULT 0,
    count_delivered     bigint      NOT NULL DEFAULT 0,
    count_read          bigint      NOT NULL DEFAULT 0,
    count_failed        bigint      NOT NULL DEFAULT 0,
    count_skipped       bigint      NOT NULL DEFAULT 0,
    count_waiting_quota bigint      NOT NULL DEFAULT 0,
    scheduled_at        timestamptz,
    started_at          timestamptz,
    completed_at        timestamptz,
    created_at          timestamptz NOT NULL
);
CREATE INDEX campaigns_tenant ON campaigns (tenant_id, created_at DESC, id);
CREATE INDEX campaigns_tenant_status ON campaigns (tenant_id, status, created_at DESC, id);

-- One row per recipient of a campaign.
CREATE TABLE deliveries
(
    campaign_id  uuid        NOT NULL,
    phone        text        NOT NULL,
    tenant_id    uuid        NOT NULL,
    status       text        NOT NULL,
    message_id   text,
    error        text,
    attempts     integer     NOT NULL DEFAULT 0,
    queued_at    timestamptz NOT NULL,
    sent_at      timestamptz,
    delivered_at timestamptz,
    read_at      timestamptz,
    failed_at    timestamptz,
    PRIMARY KEY (campaign_id, phone)
);
CREATE INDEX deliveries_campaign_status ON deliveries (campaign_id, status, phone);
CREATE INDEX deliveries_message_id ON deliveries (message_id) WHERE message_id IS NOT NULL;

-- Recurring campaigns. The parent campaign sends nothing itself; at each occurrence of its cron
-- (in its time zone) the ticker starts a run: a new campaign with the same template and audience.

-- Write side: what a run needs, and when the next occurrence is due.
CREATE TABLE recurring_campaigns
(
    campaign_id uuid PRIMARY KEY,
    tenant_id   uuid        NOT NULL,
    name        text        NOT NULL,
    template_id uuid        NOT NULL,
    session_id  uuid        NOT NULL,
    -- the normalised audience: [{"phone": "628...", "vars": {...}}, ...]
    recipients  jsonb       NOT NULL,
    recurrence  jsonb       NOT NULL,
    next_at     timestamptz NOT NULL,
    active      boolean     NOT NULL DEFAULT true
);
CREATE INDEX recurring_campaigns_due ON recurring_campaigns (next_at) WHERE active;

-- Every occurrence, fired or missed, recorded once: the primary key is what makes N instances fire
-- an occurrence once.
CREATE TABLE campaign_occurrences
(
    campaign_id   uuid        NOT NULL,
    occurrence_at timestamptz NOT NULL,
    status        text        NOT NULL CHECK (status IN ('fired', 'missed', 'failed')),
    run_id        uuid,
    reason        text,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, occurrence_at)
);

-- Read model: runs point at their parent; parents show their recurrence.
ALTER TABLE campaigns ADD COLUMN parent_id uuid;
ALTER TABLE campaigns ADD COLUMN recurrence text;
ALTER TABLE campaigns ADD COLUMN recurrence_timezone text;
CREATE INDEX campaigns_parent ON campaigns (parent_id, created_at DESC, id) WHERE parent_id IS NOT NULL;

-- Campaigns that must not send right now, written in the same transaction as the event that
-- holds them: CampaignCreated for a later time ('scheduled', released at release_at by the
-- scheduler's ticker), CampaignPaused ('paused'), CampaignCancelled ('cancelled'). Dispatch
-- consults it when it claims, so a held campaign sends nothing.
CREATE TABLE campaign_holds
(
    campaign_id uuid PRIMARY KEY,
    reason      text        NOT NULL CHECK (reason IN ('scheduled', 'paused', 'cancelled')),
    since       timestamptz NOT NULL DEFAULT now(),
    release_at  timestamptz
);
CREATE INDEX campaign_holds_due ON campaign_holds (release_at) WHERE reason = 'scheduled';

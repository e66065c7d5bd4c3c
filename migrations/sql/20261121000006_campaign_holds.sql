-- Campaigns that must not send right now, written in the same transaction as CampaignPaused /
-- CampaignCancelled. Dispatch consults it when it claims and when it re-queues a retry, so a
-- paused campaign sends nothing more and a cancelled one nothing at all.
CREATE TABLE campaign_holds
(
    campaign_id uuid PRIMARY KEY,
    reason      text        NOT NULL CHECK (reason IN ('paused', 'cancelled')),
    since       timestamptz NOT NULL DEFAULT now()
);

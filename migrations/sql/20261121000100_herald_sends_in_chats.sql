-- Herald's own sends in chats (docs/decisions/0027): owned by the `conversations` projector
-- (read models: truncated on a rebuild).

-- Each campaign's session and message, from `CampaignCreated`: a `DeliverySent` names only
-- `<campaign>:<phone>`, and this says which number sent it and what its text was (the template
-- body, rendered again with the delivery's vars for the few recipients who have a chat).
CREATE TABLE chat_campaigns
(
    campaign_id uuid PRIMARY KEY,
    tenant_id   uuid        NOT NULL,
    session_id  uuid        NOT NULL,
    name        text        NOT NULL,
    message     jsonb       NOT NULL, -- herald_domain::campaign::MessageSpec
    -- when its sends can start: the schedule, else its creation
    starts_at   timestamptz NOT NULL
);
-- A new chat looks for the recent campaigns of its number.
CREATE INDEX chat_campaigns_session ON chat_campaigns (session_id, starts_at DESC);

-- A campaign's sends find the chat of their recipient (if any) by number and JID, in one join
-- per projector batch.
CREATE INDEX chats_session_jid ON chats (session_id, jid);

-- Campaigns created before this migration: the projector only sees `CampaignCreated` events after
-- its checkpoint, so the ones it already passed are read from the store here (the same columns
-- `projections::conversations::apply_campaign` writes; a rebuild writes them again).
INSERT INTO chat_campaigns (campaign_id, tenant_id, session_id, name, message, starts_at)
SELECT e.aggregate_id::uuid,
       (c.p ->> 'tenant_id')::uuid,
       (c.p ->> 'session_id')::uuid,
       c.p ->> 'name',
       c.p -> 'message',
       coalesce((c.p ->> 'scheduled_at')::timestamptz, (c.p ->> 'at')::timestamptz)
  FROM events e
       CROSS JOIN LATERAL (SELECT e.payload::jsonb -> 'CampaignCreated' AS p) c
 WHERE e.aggregate_type = 'Campaign' AND e.event_type = 'CampaignCreated'
ON CONFLICT DO NOTHING;

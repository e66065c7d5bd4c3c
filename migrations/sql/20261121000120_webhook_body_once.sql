-- A WuzAPI post in JSON encoding IS its event object: storing it again in `event` doubled the
-- size of every receipt row (and of the row version written when it is marked processed). From
-- now on `event` is NULL when the event is the body itself, and readers take
-- `COALESCE(event::text, convert_from(body, 'UTF8'))`. Form and multipart posts, and the Cloud
-- API's notifications (one row per change), still store their extracted event here.
ALTER TABLE webhook_inbox ALTER COLUMN event DROP NOT NULL;

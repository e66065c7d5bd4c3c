-- Sessions that send through the WhatsApp Cloud API (docs/cloud-api.md, decision 0080). The provider
-- is kept with the credentials: the dispatcher reads it with the token to pick the gateway. A Cloud
-- API session's `gateway_token` holds `<phone_number_id>:<access token>` (the Cloud gateway's form of
-- a number's credentials), its `meta_app_secret` verifies the posts to its own callback and
-- `meta_verify_token` answers Meta's subscription handshake there. Like the token, never shown back
-- (the verify token excepted: the user copies it into the Meta app).
ALTER TABLE session_credentials ADD COLUMN provider text NOT NULL DEFAULT 'wuzapi'
    CHECK (provider IN ('wuzapi', 'cloud_api'));
ALTER TABLE session_credentials ADD COLUMN meta_app_secret text;
ALTER TABLE session_credentials ADD COLUMN meta_verify_token text;
ALTER TABLE session_credentials ADD COLUMN meta_waba_id text;

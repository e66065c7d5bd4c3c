-- Media lifetime (docs/images.md, decision 0024): a `media` row may be deleted once nothing that can
-- still send refers to it and it has not been used for a grace period.
--
-- `last_used_at` is set when the image is stored or stored again (a template created or changed,
-- a single image send accepted) and when a campaign or a recurring run is created with it, so a
-- request that has stored an image but not yet written what refers to it is always inside the
-- grace period. Existing rows start their grace period now.
ALTER TABLE media ADD COLUMN last_used_at timestamptz NOT NULL DEFAULT now();

-- The collector looks only at rows past the grace period.
CREATE INDEX media_last_used ON media (last_used_at);

-- Processed images of image templates (docs/images.md, decision 0021).
--
-- Each row is one JPEG that Herald fetched or received, decoded with limits and re-encoded,
-- keyed by the SHA-256 of those JPEG bytes. Template and campaign events carry only the hash, so
-- the event store never holds megabytes; every recipient of every campaign using the image is
-- sent these same bytes. Rows are written before the event that references them and are never
-- updated (same hash, same bytes), so `ON CONFLICT DO NOTHING` makes storing idempotent.
-- This is source data, not a read model: projector rebuilds never touch it.
CREATE TABLE media
(
    sha256       text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    content_type text        NOT NULL,
    width        integer     NOT NULL CHECK (width > 0),
    height       integer     NOT NULL CHECK (height > 0),
    data         bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- The templates read model shows which image a template sends.
ALTER TABLE templates
    ADD COLUMN image_sha256 text,
    ADD COLUMN image_width  integer,
    ADD COLUMN image_height integer,
    ADD COLUMN image_bytes  bigint;

-- Safe sending: opt-outs and the frequency cap (docs/safe-sending.md).

-- The phones a tenant may not send campaigns to. Written in the same transaction as the
-- contact's `ContactOptedOut` (deleted with `ContactOptedIn`), so the dispatcher's claim sees an
-- opt-out the moment it is committed, with no projector in between. Not a read model: it is
-- never rebuilt, and a deleted contact's row stays (an opt-out outlives the contact).
CREATE TABLE opt_outs
(
    tenant_id    uuid        NOT NULL,
    phone        text        NOT NULL,
    source       text        NOT NULL,
    opted_out_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, phone)
);

-- A tenant's stop and start keywords; no row: the defaults.
CREATE TABLE opt_out_settings
(
    tenant_id         uuid PRIMARY KEY,
    stop_keywords     text[]      NOT NULL,
    start_keywords    text[]      NOT NULL,
    confirmation_text text,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- A tenant's frequency cap: at most `messages` campaign messages per contact within `hours`.
-- No row: no cap.
CREATE TABLE frequency_caps
(
    tenant_id  uuid PRIMARY KEY,
    messages   integer     NOT NULL CHECK (messages > 0),
    hours      integer     NOT NULL CHECK (hours > 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The campaign messages each phone of a capped tenant was given, counted at claim time: the
-- times of its recent first sends. The claim locks the rows of its batch's phones (in one
-- global order), so several instances never let one phone past its cap together.
CREATE TABLE frequency_counts
(
    tenant_id uuid          NOT NULL,
    phone     text          NOT NULL,
    sends     timestamptz[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, phone)
);

-- The contacts read model shows the opt-out.
ALTER TABLE contacts
    ADD COLUMN opted_out_at   timestamptz,
    ADD COLUMN opt_out_source text;
CREATE INDEX contacts_opted_out ON contacts (tenant_id) WHERE opted_out_at IS NOT NULL;

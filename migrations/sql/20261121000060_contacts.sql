-- Contacts read model (projector `contacts`), one row per live contact of a tenant.
-- `key` is the phone digits, or `<digits>@lid` for a WhatsApp privacy id without a phone.
-- List order (stable keyset): favourites first, named before unnamed, then by lowercased name,
-- then by key. `rank` and `sort_name` are that order, materialised so one index serves it;
-- "C" collation makes it byte order, the same in every database.
CREATE TABLE contacts
(
    tenant_id  uuid        NOT NULL,
    key        text COLLATE "C" NOT NULL,
    phone      text,
    lid        text,
    name       text,
    tags       text[]      NOT NULL DEFAULT '{}',
    favorite   boolean     NOT NULL DEFAULT false,
    fields     jsonb       NOT NULL DEFAULT '{}',
    source     text        NOT NULL,
    rank       smallint    NOT NULL,
    sort_name  text COLLATE "C" NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX contacts_list ON contacts (tenant_id, rank, sort_name, key);
-- `?tag=` and audiences: `tags @> ARRAY[tag]`
CREATE INDEX contacts_tags ON contacts USING gin (tags);

-- A scheduled (one-off) campaign with an audience: the audience is resolved when the ticker starts
-- it, so contacts tagged in the meantime are included. Written with the campaign, deleted when
-- resolved. `recipients` are the explicit ones, merged at start (their vars win).
CREATE TABLE campaign_audiences
(
    campaign_id uuid PRIMARY KEY,
    tenant_id   uuid  NOT NULL,
    session_id  uuid  NOT NULL,
    audience    jsonb NOT NULL,
    recipients  jsonb NOT NULL
);

-- A recurring campaign's audience, resolved at each occurrence.
ALTER TABLE recurring_campaigns ADD COLUMN audience jsonb;

-- A number belongs to one tenant (issue 13 item 3, docs/decisions/0041).
--
-- A WuzAPI user token is claimed by one session at a time, across every tenant. The claim is
-- written BEFORE Herald calls the gateway, so a second linker is refused (409) before it can move
-- the first session's webhook; the unique primary key makes two simultaneous links unable to
-- both win. Only a SHA-256 of the token is kept here; the token itself stays in
-- session_credentials (decision 0007). A claim dies with its session.
CREATE TABLE gateway_token_claims
(
    token_sha256 bytea PRIMARY KEY,
    session_id   uuid        NOT NULL UNIQUE,
    tenant_id    uuid        NOT NULL,
    claimed_at   timestamptz NOT NULL DEFAULT now()
);

-- Existing sessions: the oldest session of each token keeps it (ties broken by session id).
INSERT INTO gateway_token_claims (token_sha256, session_id, tenant_id, claimed_at)
SELECT DISTINCT ON (sha256(convert_to(gateway_token, 'UTF8')))
       sha256(convert_to(gateway_token, 'UTF8')), session_id, tenant_id, created_at
  FROM session_credentials
 WHERE gateway_token <> ''
 ORDER BY sha256(convert_to(gateway_token, 'UTF8')), created_at, session_id;

-- Newer sessions that shared a token lose it: the token is blanked (nothing can be sent through
-- them) and their webhook signing key is replaced by a random one, so the gateway's posts, which
-- are signed with whatever key the last linker set, are refused for them instead of feeding
-- another tenant's number into their chats. The sessions stay (their tenant can still read and
-- delete them); they are listed here for the operator.
CREATE TABLE gateway_token_superseded
(
    session_id    uuid PRIMARY KEY,
    tenant_id     uuid        NOT NULL,
    kept_session_id uuid      NOT NULL,
    superseded_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO gateway_token_superseded (session_id, tenant_id, kept_session_id)
SELECT s.session_id, s.tenant_id, c.session_id
  FROM session_credentials s
  JOIN gateway_token_claims c ON c.token_sha256 = sha256(convert_to(s.gateway_token, 'UTF8'))
 WHERE c.session_id <> s.session_id;
UPDATE session_credentials s
   SET gateway_token = '',
       hmac_key      = replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')
  FROM gateway_token_superseded x
 WHERE x.session_id = s.session_id;

-- A Cloud API phone number id is linked only with proof (an access token Meta's Graph API accepts
-- for that id) or by the operator. The access token is a secret stored like the gateway token:
-- never returned, never logged. `meta_linked_by`: 'graph' or 'operator'; NULL for ids linked
-- before this change (kept; the operator can clear them through the admin API).
ALTER TABLE session_credentials ADD COLUMN meta_access_token text;
ALTER TABLE session_credentials ADD COLUMN meta_linked_by text
    CHECK (meta_linked_by IN ('graph', 'operator'));

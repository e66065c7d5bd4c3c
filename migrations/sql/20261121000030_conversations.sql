-- Conversations (issue 4 item 4): chats of a linked number and their messages, built by the
-- `conversations` projector from `Conversation` events (read models: truncated on a rebuild).

CREATE TABLE chats
(
    id                     uuid PRIMARY KEY, -- herald_domain::conversation::conversation_id
    tenant_id              uuid        NOT NULL,
    session_id             uuid        NOT NULL,
    jid                    text        NOT NULL, -- device suffix stripped; groups end in @g.us
    name                   text,                 -- the peer's profile name (direct chats only)
    is_group               boolean     NOT NULL,
    -- the newest message by its own timestamp (a late, older message does not replace it)
    last_message_id        text        NOT NULL,
    last_message_direction text        NOT NULL,
    last_message_sender    text        NOT NULL,
    last_message_text      text,
    last_message_type      text        NOT NULL,
    last_activity          timestamptz NOT NULL,
    unread_count           integer     NOT NULL DEFAULT 0,
    created_at             timestamptz NOT NULL
);
-- The chat list: a tenant's (or one session's) chats, newest activity first, keyset paginated.
CREATE INDEX chats_tenant_activity ON chats (tenant_id, last_activity DESC, id DESC);
CREATE INDEX chats_session_activity ON chats (session_id, last_activity DESC, id DESC);

CREATE TABLE chat_messages
(
    chat_id     uuid        NOT NULL,
    message_id  text        NOT NULL,
    tenant_id   uuid        NOT NULL,
    direction   text        NOT NULL, -- incoming | outgoing
    sender      text        NOT NULL, -- a JID, possibly an @lid privacy id
    sender_name text,
    text        text,
    type        text        NOT NULL, -- text, image, video, audio, document, sticker, ...
    sent_at     timestamptz NOT NULL, -- WhatsApp's timestamp of the message
    status      text        NOT NULL, -- received | sent | delivered | read | failed
    status_at   timestamptz,
    PRIMARY KEY (chat_id, message_id)
);
-- A chat's messages newest first, keyset paginated by (sent_at, message_id).
CREATE INDEX chat_messages_by_time ON chat_messages (chat_id, sent_at DESC, message_id DESC);

-- Write side: which conversation holds a message id of a session, written by the inbox processor
-- in the transaction that records the message. Receipts for messages Herald did not send (sent
-- from the phone) find their chat here, with no dependence on projector lag.
CREATE TABLE chat_message_index
(
    session_id      uuid        NOT NULL,
    message_id      text        NOT NULL,
    conversation_id uuid        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, message_id)
);

-- WhatsApp Cloud API (issue 4 item 6): the Meta phone number id a session stands for. Meta's
-- notifications name the business number by it (`value.metadata.phone_number_id`).
ALTER TABLE session_credentials ADD COLUMN meta_phone_number_id text;
CREATE UNIQUE INDEX session_credentials_meta_phone_number_id
    ON session_credentials (meta_phone_number_id) WHERE meta_phone_number_id IS NOT NULL;

-- Meta notifications for a number no session stands for are stored (and ignored) without a
-- session; they are deduplicated by body alone.
ALTER TABLE webhook_inbox ALTER COLUMN session_id DROP NOT NULL;
ALTER TABLE webhook_inbox ALTER COLUMN tenant_id DROP NOT NULL;
CREATE UNIQUE INDEX webhook_inbox_sessionless_dedup ON webhook_inbox (body_sha256) WHERE session_id IS NULL;

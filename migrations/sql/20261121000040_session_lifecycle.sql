-- The whole life of a linked number (docs/decisions/0015, 0016).

-- WuzAPI's id for the user Herald created through the admin API for this session, so deleting the
-- session deletes that user too. NULL when the session was linked with an existing user's token
-- (that user is not Herald's to delete).
ALTER TABLE session_credentials ADD COLUMN gateway_user_id text;

-- The latest pairing QR code of a session, as WuzAPI posted it (`QR` webhook, `qrCodeBase64`) or
-- answered it (`/session/qr`). Kept out of the event store and the `sessions` read model on
-- purpose: a QR code lets whoever scans it take over the number, and events are published
-- (DESIGN decision 12). Served only by `GET /api/v1/sessions/{id}/qr`; deleted when the number
-- connects, logs out, times out or is deleted.
CREATE TABLE session_qr
(
    session_id  uuid PRIMARY KEY,
    qr_code     text        NOT NULL,
    received_at timestamptz NOT NULL
);

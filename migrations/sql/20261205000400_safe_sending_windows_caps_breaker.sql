-- Safe sending (docs/safe-sending.md): send windows, per-number safety and the circuit breaker,
-- all checked when the dispatcher claims a batch (docs/decisions/0064).

-- A campaign's own send window (`{"days", "start", "end", "timezone"?}` as the API takes it);
-- without a row the campaign follows its session's window, if any.
CREATE TABLE campaign_send_windows
(
    campaign_id uuid PRIMARY KEY,
    tenant_id   uuid  NOT NULL,
    send_window jsonb NOT NULL
);

-- A linked number's safety settings and its default send window. Without a row: no daily cap,
-- no warm-up, no typing, no window.
CREATE TABLE session_safety
(
    session_id   uuid PRIMARY KEY,
    tenant_id    uuid    NOT NULL,
    daily_cap    integer CHECK (daily_cap IS NULL OR daily_cap >= 0),
    warmup       boolean NOT NULL DEFAULT false,
    typing       boolean NOT NULL DEFAULT false,
    -- the day the number started sending (the warm-up counts from it)
    linked_since date    NOT NULL,
    send_window  jsonb
);

-- Campaign messages granted per number and local day: one upsert per number and claim grants at
-- most what the day's cap leaves, so several instances agree.
CREATE TABLE session_daily_sends
(
    session_id uuid    NOT NULL,
    day        date    NOT NULL,
    sent       integer NOT NULL DEFAULT 0,
    last_grant integer NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, day)
);

-- Numbers the gateway reported logged out or disconnected (session events); removed when the
-- number connects again. The claim pauses every running campaign on such a number.
CREATE TABLE session_halts
(
    session_id uuid PRIMARY KEY,
    reason     text        NOT NULL,
    since      timestamptz NOT NULL DEFAULT now()
);

-- The outcomes of each number's last sends (true: failed permanently), newest last, at most 50:
-- the failure-spike breaker. Emptied when the breaker opens.
CREATE TABLE session_send_health
(
    session_id uuid PRIMARY KEY,
    recent     boolean[] NOT NULL DEFAULT '{}'
);

-- Recipients waiting for their send window or their number's daily cap (shown in the counts).
ALTER TABLE dispatch_queue
    ADD COLUMN waiting_window boolean NOT NULL DEFAULT false,
    ADD COLUMN waiting_cap    boolean NOT NULL DEFAULT false;
CREATE INDEX dispatch_queue_waiting_window ON dispatch_queue (campaign_id) WHERE waiting_window;
CREATE INDEX dispatch_queue_waiting_cap ON dispatch_queue (campaign_id) WHERE waiting_cap;

-- Why a campaign is paused when the circuit breaker paused it (NULL: paused by a user).
ALTER TABLE campaigns ADD COLUMN pause_reason text;

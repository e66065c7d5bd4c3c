-- Accounts (issue 13 item 5, docs/decisions/0042).
--
-- A user's credential version is written into every access token and compared on each request:
-- changing the password bumps it, so tokens issued before stop working at once; a deleted user
-- has no row, so its tokens stop too. Existing users start at 0, which tokens issued before this
-- change carry implicitly.
ALTER TABLE users ADD COLUMN credential_version integer NOT NULL DEFAULT 0;

-- Attempt counters for throttling (failed logins per account and per address, registrations per
-- address, number links per tenant and per address): one row per (scope, key), a fixed window
-- that starts with its first attempt. Kept in Postgres so every instance counts the same
-- attempts; rows whose window has ended are deleted as Herald goes, so the table holds at most
-- the keys seen in the longest window.
CREATE TABLE auth_throttle
(
    scope        text        NOT NULL,
    key          text        NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    attempts     integer     NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX auth_throttle_window_end ON auth_throttle (window_end);

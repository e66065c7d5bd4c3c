-- Accounts are plain tables, not event-sourced: they are configuration, not history.
CREATE TABLE tenants
(
    id             uuid PRIMARY KEY,
    name           text        NOT NULL,
    plan           text        NOT NULL DEFAULT 'basic',
    plan_expires_at timestamptz,
    default_region text        NOT NULL DEFAULT 'ID',
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users
(
    id            uuid PRIMARY KEY,
    tenant_id     uuid        NOT NULL REFERENCES tenants (id),
    email         text        NOT NULL,
    name          text,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- Emails are unique regardless of case.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- Integrator keys: only a SHA-256 of the key is kept (keys are 256-bit random, so a slow hash adds nothing).
CREATE TABLE api_keys
(
    id         uuid PRIMARY KEY,
    tenant_id  uuid        NOT NULL REFERENCES tenants (id),
    name       text        NOT NULL,
    prefix     text        NOT NULL,
    key_hash   bytea       NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

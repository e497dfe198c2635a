-- Organizations, their API keys, and the event archive that backs the inbox.

CREATE TABLE organizations (
    id                    UUID PRIMARY KEY,
    name                  TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    tier                  TEXT NOT NULL CHECK (tier IN ('free', 'pro', 'business', 'enterprise')),
    rate_limit_per_minute INTEGER NOT NULL CHECK (rate_limit_per_minute > 0),
    webhook_url           TEXT,
    webhook_secret        TEXT,
    webhook_enabled       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id              UUID PRIMARY KEY,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- Non-secret part of the key, used to find the row; the secret part is
    -- only ever stored as an argon2id hash.
    lookup_prefix   TEXT NOT NULL UNIQUE,
    key_hash        TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at      TIMESTAMPTZ
);

CREATE INDEX api_keys_organization ON api_keys (organization_id, created_at DESC);

CREATE TABLE events (
    id              UUID PRIMARY KEY,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    type            TEXT NOT NULL,
    dedup_id        TEXT,
    payload         JSONB NOT NULL,
    status          TEXT NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'delivered', 'failed', 'dead_letter', 'acknowledged')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    archived_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at    TIMESTAMPTZ,
    acknowledged_at TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The inbox: one organization's events with a given status, newest first.
-- Event ids are UUIDv7, so id order is creation order.
CREATE INDEX events_inbox ON events (organization_id, status, id DESC);
-- The inbox across every status.
CREATE INDEX events_organization ON events (organization_id, id DESC);

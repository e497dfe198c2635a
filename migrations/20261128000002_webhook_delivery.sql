-- Webhook delivery: signing secrets with a rotation grace period, automatic
-- disabling on 410 Gone, and a record of every delivery attempt.

ALTER TABLE organizations
    ADD COLUMN webhook_secret_previous   TEXT,
    ADD COLUMN webhook_secret_rotated_at TIMESTAMPTZ,
    ADD COLUMN webhook_disabled_reason   TEXT,
    ADD COLUMN webhook_updated_at        TIMESTAMPTZ;

ALTER TABLE events ADD COLUMN next_retry_at TIMESTAMPTZ;

-- Dead letters of one organization, for bulk replay.
CREATE INDEX events_dead_letters ON events (organization_id, updated_at)
    WHERE status = 'dead_letter';

CREATE TABLE delivery_attempts (
    event_id        UUID NOT NULL,
    attempt         INTEGER NOT NULL CHECK (attempt > 0),
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    attempted_at    TIMESTAMPTZ NOT NULL,
    duration_ms     INTEGER NOT NULL,
    response_status INTEGER,
    error           TEXT,
    next_retry_at   TIMESTAMPTZ,
    PRIMARY KEY (event_id, attempt)
);

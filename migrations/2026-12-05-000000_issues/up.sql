-- Issues: what the relay noticed going wrong, one row per condition (a subscription's breaker,
-- its failures of one kind, a source's refusals, a subscription's lag), reopened when it
-- recurs rather than duplicated.
CREATE TABLE issues (
    id uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN
        ('subscription_disabled', 'deliveries_failed', 'source_rejecting', 'subscription_lagging')),
    subscription_id uuid REFERENCES subscriptions (id) ON DELETE CASCADE,
    source_id uuid NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    -- What groups occurrences within a kind: the class of failure ("HTTP 500 from
    -- api.example.com", "timeout") for deliveries_failed, '' for the others.
    cause text NOT NULL DEFAULT '',
    state text NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    count bigint NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    -- When it last opened or reopened, and how many times it reopened.
    opened_at timestamptz NOT NULL,
    reopened integer NOT NULL DEFAULT 0,
    acknowledged_at timestamptz,
    acknowledged_by text,
    resolved_at timestamptz,
    -- Who resolved it; null when it resolved by itself.
    resolved_by text,
    -- The latest occurrences: events, or refused requests for source_rejecting (newest first).
    examples uuid[] NOT NULL DEFAULT '{}',
    -- What was seen last, in words (the breaker's reason, the lag).
    detail text NOT NULL DEFAULT '',
    -- Counts the issue's transitions (opened, reopened, resolved): a notification names the
    -- one it tells of, so that each is told once.
    transition integer NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX issues_condition
    ON issues (kind, coalesce(subscription_id, source_id), cause);
CREATE INDEX issues_workspace ON issues (workspace_id, id DESC);
CREATE INDEX issues_unresolved ON issues (kind) WHERE state <> 'resolved';
CREATE INDEX issues_open_by_workspace ON issues (workspace_id) WHERE state = 'open';

-- Deliveries in the graveyard that no issue has counted yet: the scan counts a failed
-- delivery once per time it fails (a replayed delivery that fails again counts again).
ALTER TABLE deliveries ADD COLUMN counted_attempts integer NOT NULL DEFAULT 0;
UPDATE deliveries SET counted_attempts = attempts WHERE status = 'failed';
CREATE INDEX deliveries_uncounted ON deliveries (subscription_id)
    WHERE status = 'failed' AND attempts > counted_attempts;

-- Since when a delivery has been waiting: its event's arrival, or its replay. A
-- subscription's lag is its oldest undelivered delivery's wait.
ALTER TABLE deliveries ADD COLUMN due_since timestamptz NOT NULL DEFAULT now();
CREATE INDEX deliveries_undelivered ON deliveries (subscription_id, due_since)
    WHERE status IN ('pending', 'retrying');

CREATE INDEX rejected_requests_received ON rejected_requests (received_at);

-- Where a workspace is told about its issues.
CREATE TABLE notification_channels (
    id uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('email', 'slack', 'webhook')),
    name text NOT NULL,
    -- The address (email) or the URL (slack, webhook).
    target text NOT NULL,
    -- Webhook channels sign their payloads with it, as deliveries are signed.
    signing_secret text,
    -- The issue kinds it is told of.
    kinds text[] NOT NULL,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_channels_workspace ON notification_channels (workspace_id, created_at);

-- The outbox: one row per message to send, written in the transaction of the transition it
-- tells of, sent by whichever process claims it. Its id is the message's, the same on every
-- try. Transitions of one issue that come while a message for it waits are folded into it.
CREATE TABLE notifications (
    id uuid PRIMARY KEY,
    channel_id uuid NOT NULL REFERENCES notification_channels (id) ON DELETE CASCADE,
    issue_id uuid NOT NULL REFERENCES issues (id) ON DELETE CASCADE,
    -- 'issue.opened', 'issue.reopened', 'issue.resolved', 'subscription.disabled',
    -- 'subscription.enabled'.
    event_type text NOT NULL,
    -- The issue's transition it tells of (the latest, when several were folded in), and how
    -- many it tells of.
    transition integer NOT NULL,
    transitions integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    due_at timestamptz NOT NULL DEFAULT now(),
    leased_until timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    sent_at timestamptz
);
CREATE UNIQUE INDEX notifications_once
    ON notifications (channel_id, issue_id, transition, event_type);
CREATE INDEX notifications_due ON notifications (due_at) WHERE sent_at IS NULL;

-- A delivery policy per subscription: each field it sets replaces the process-wide setting
-- (retry schedule, timeout, in-flight cap), and it may add a rate limit and extra headers.
-- Stored as one document, durations in milliseconds: {"retry_schedule_ms": [...],
-- "timeout_ms": n, "max_in_flight": n, "rate_limit": {"count": n, "per": "second"},
-- "headers": {...}}.
ALTER TABLE subscriptions ADD COLUMN policy jsonb NOT NULL DEFAULT '{}';

-- What a delivery still to make waits for until next_attempt_at: 'retry' or 'rate_limit'. Null
-- when its next_attempt_at is no due time (the reaper's marks of when to republish it).
ALTER TABLE deliveries ADD COLUMN waiting text;

-- A rate limit's state, shared by every replica: the earliest a subscription's next delivery
-- may be sent, and the end of the slots handed to deliveries sent to wait for their turn.
CREATE TABLE rate_limits (
    subscription_id uuid PRIMARY KEY REFERENCES subscriptions (id) ON DELETE CASCADE,
    next_send timestamptz NOT NULL,
    reserved_until timestamptz NOT NULL
);

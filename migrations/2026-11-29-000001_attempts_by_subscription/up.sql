-- A subscription's attempts over a time window (its charts), without a join through events: one
-- index range per chart, fast at millions of attempts.
ALTER TABLE delivery_attempts ADD COLUMN subscription_id uuid;
UPDATE delivery_attempts SET subscription_id = events.subscription_id
    FROM events WHERE events.id = delivery_attempts.event_id;
ALTER TABLE delivery_attempts ALTER COLUMN subscription_id SET NOT NULL;
CREATE INDEX delivery_attempts_subscription_started ON delivery_attempts (subscription_id, started_at);

-- A subscription's attempts over a time window (its charts), without a join through events: one
-- index range per chart, fast at millions of attempts. Nullable, so that replicas still running
-- the previous release keep recording attempts while a new one migrates (theirs simply do not
-- show in the charts).
ALTER TABLE delivery_attempts ADD COLUMN subscription_id uuid;
UPDATE delivery_attempts SET subscription_id = events.subscription_id
    FROM events WHERE events.id = delivery_attempts.event_id;
CREATE INDEX delivery_attempts_subscription_started ON delivery_attempts (subscription_id, started_at);

-- Back to one subscription per ingest URL: each event goes back to the subscription of its
-- first delivery (an event no subscription took goes back to the first subscription of its
-- source, or is dropped when its source has none), with that delivery's state.
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_delivery_id_fkey;

ALTER TABLE events ADD COLUMN status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'retrying', 'completed', 'failed')),
    ADD COLUMN attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN retry_count integer NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at timestamptz,
    ADD COLUMN completed_at timestamptz,
    ADD COLUMN last_error text,
    ADD COLUMN leased_until timestamptz,
    ADD COLUMN republishes integer NOT NULL DEFAULT 0,
    ADD COLUMN subscription_id uuid;

UPDATE events SET subscription_id = first.subscription_id, status = first.status,
        attempts = first.attempts, retry_count = first.retry_count,
        next_attempt_at = first.next_attempt_at, completed_at = first.completed_at,
        last_error = first.last_error, leased_until = first.leased_until,
        republishes = first.republishes
    FROM (SELECT DISTINCT ON (event_id) * FROM deliveries ORDER BY event_id, id) AS first
    WHERE first.event_id = events.id;
UPDATE events SET subscription_id = (SELECT min(s.id::text)::uuid FROM subscriptions s
        WHERE s.source_id = events.source_id)
    WHERE subscription_id IS NULL;
DELETE FROM events WHERE subscription_id IS NULL;
DELETE FROM delivery_attempts WHERE delivery_id NOT IN (SELECT id FROM events);

DROP TABLE deliveries;
DROP FUNCTION delivery_id(uuid);

ALTER TABLE delivery_attempts RENAME COLUMN delivery_id TO event_id;
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_event_id_fkey
    FOREIGN KEY (event_id) REFERENCES events (id) ON DELETE CASCADE;

ALTER TABLE events DROP CONSTRAINT events_source_id_fkey;
ALTER TABLE events DROP CONSTRAINT events_source_id_idempotency_key_key;
DROP INDEX events_source_id;
ALTER TABLE events DROP COLUMN source_id;
ALTER TABLE events ALTER COLUMN subscription_id SET NOT NULL;
ALTER TABLE events ADD CONSTRAINT events_subscription_id_fkey
    FOREIGN KEY (subscription_id) REFERENCES subscriptions (id) ON DELETE CASCADE;
ALTER TABLE events ADD CONSTRAINT events_subscription_id_idempotency_key_key
    UNIQUE (subscription_id, idempotency_key);
CREATE INDEX events_subscription_id ON events (subscription_id, id DESC);
CREATE INDEX events_failed ON events (id DESC) WHERE status = 'failed';
CREATE INDEX events_due ON events (next_attempt_at) WHERE status IN ('pending', 'retrying');

ALTER TABLE subscriptions ADD COLUMN ingest_token text, ADD COLUMN provider jsonb;
UPDATE subscriptions SET ingest_token = CASE WHEN sources.id = subscriptions.id
        THEN sources.ingest_token ELSE left(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 43) END,
    provider = sources.provider
    FROM sources WHERE sources.id = subscriptions.source_id;
ALTER TABLE subscriptions ALTER COLUMN ingest_token SET NOT NULL;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_ingest_token_key UNIQUE (ingest_token);
DROP INDEX subscriptions_source_id;
ALTER TABLE subscriptions DROP COLUMN source_id;
DROP TABLE sources;

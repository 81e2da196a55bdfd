-- Routing. A source faces the provider (its ingest URL and the provider check); each of its
-- subscriptions routes its events to one endpoint. An event is stored once, for its source; a
-- delivery is one event for one subscription, and carries what the event used to: status,
-- attempts, retry budget, lease and next attempt.
--
-- Every existing subscription gets a source of its own with the same id, token and provider
-- check, so every ingest URL keeps working. Every existing event keeps its id and gets one
-- delivery whose id is the event's, so the attempts recorded for it (keyed by that id) belong
-- to the delivery as they are, and a message still in a queue names its delivery.

CREATE TABLE sources (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name text NOT NULL,
    ingest_token text NOT NULL UNIQUE,
    -- The provider check: its kind, its secret and its options, as one document.
    provider jsonb,
    -- Made for a subscription created without a source: it goes with that subscription's
    -- deletion once no other subscription uses it, as an ingest URL did before sources.
    implicit boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sources_user_id ON sources (user_id, id);

INSERT INTO sources (id, user_id, name, ingest_token, provider, implicit, created_at, updated_at)
    SELECT id, user_id, name, ingest_token, provider, true, created_at, updated_at
    FROM subscriptions;

ALTER TABLE subscriptions ADD COLUMN source_id uuid REFERENCES sources (id) ON DELETE CASCADE;
UPDATE subscriptions SET source_id = id;
ALTER TABLE subscriptions ALTER COLUMN source_id SET NOT NULL;
ALTER TABLE subscriptions DROP COLUMN ingest_token, DROP COLUMN provider;
CREATE INDEX subscriptions_source_id ON subscriptions (source_id);

-- Events belong to their source. The old subscription ids are the new sources' ids, so the
-- column is renamed, not rewritten; its idempotency keys stay unique per source.
ALTER TABLE events DROP CONSTRAINT events_subscription_id_fkey;
ALTER TABLE events RENAME COLUMN subscription_id TO source_id;
ALTER TABLE events ADD CONSTRAINT events_source_id_fkey
    FOREIGN KEY (source_id) REFERENCES sources (id) ON DELETE CASCADE;
ALTER INDEX events_subscription_id RENAME TO events_source_id;
ALTER TABLE events RENAME CONSTRAINT events_subscription_id_idempotency_key_key
    TO events_source_id_idempotency_key_key;

-- A delivery's id is a v7 uuid carrying its event's arrival: deliveries list in the order
-- their events arrived, and a time range bounds their ids as it bounds events'.
CREATE FUNCTION delivery_id(event uuid) RETURNS uuid LANGUAGE sql VOLATILE AS
    $$ SELECT (left(event::text, 14) || '7' || substr(gen_random_uuid()::text, 16))::uuid $$;

CREATE TABLE deliveries (
    id uuid PRIMARY KEY,
    event_id uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    subscription_id uuid NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'retrying', 'completed', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    -- Retries scheduled since the delivery was made or last replayed (the retry budget used).
    retry_count integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    completed_at timestamptz,
    last_error text,
    -- Held by the delivery attempting it (one attempt chain per delivery).
    leased_until timestamptz,
    -- The reaper's publishes since a delivery last claimed it.
    republishes integer NOT NULL DEFAULT 0,
    UNIQUE (event_id, subscription_id)
);

INSERT INTO deliveries (id, event_id, subscription_id, status, attempts, retry_count,
        next_attempt_at, completed_at, last_error, leased_until, republishes)
    SELECT id, id, source_id, status, attempts, retry_count, next_attempt_at, completed_at,
        last_error, leased_until, republishes
    FROM events;

CREATE INDEX deliveries_subscription_id ON deliveries (subscription_id, id DESC);
-- The graveyard. Partial: only the failed have an entry.
CREATE INDEX deliveries_failed ON deliveries (id DESC) WHERE status = 'failed';
-- What the reaper scans: deliveries still to make, by when they are due.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status IN ('pending', 'retrying');

ALTER TABLE events DROP COLUMN status, DROP COLUMN attempts, DROP COLUMN retry_count,
    DROP COLUMN next_attempt_at, DROP COLUMN completed_at, DROP COLUMN last_error,
    DROP COLUMN leased_until, DROP COLUMN republishes;

-- Attempts belong to their delivery; the migrated deliveries have their events' ids.
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_event_id_fkey;
ALTER TABLE delivery_attempts RENAME COLUMN event_id TO delivery_id;
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_delivery_id_fkey
    FOREIGN KEY (delivery_id) REFERENCES deliveries (id) ON DELETE CASCADE;

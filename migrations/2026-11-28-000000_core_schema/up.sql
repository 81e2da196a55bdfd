CREATE TABLE users (
    id uuid PRIMARY KEY,
    email text NOT NULL,
    password_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- Addresses are stored lower-cased; the index makes "unique regardless of case" hold in the database too.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE sessions (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE api_keys (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name text NOT NULL,
    prefix text NOT NULL,
    key_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_user_id ON api_keys (user_id);

CREATE TABLE subscriptions (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name text NOT NULL,
    target_url text NOT NULL,
    ingest_token text NOT NULL UNIQUE,
    signing_secret text NOT NULL,
    previous_signing_secret text,
    previous_secret_expires_at timestamptz,
    -- The provider validator: its kind, its secret and its options, as one document.
    provider jsonb,
    is_active boolean NOT NULL DEFAULT true,
    disabled_reason text,
    consecutive_failures integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_user_id ON subscriptions (user_id, id);

CREATE TABLE events (
    -- uuid v7: ids sort by arrival, which keyset pagination relies on.
    id uuid PRIMARY KEY,
    subscription_id uuid NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'retrying', 'completed', 'failed')),
    -- Exactly the bytes the provider sent; the relay forwards these.
    body bytea NOT NULL,
    -- The same body as a document when it is JSON, for queries.
    payload jsonb,
    content_type text,
    headers jsonb NOT NULL DEFAULT '{}',
    idempotency_key text,
    attempts integer NOT NULL DEFAULT 0,
    -- Retries scheduled since the event arrived or was last replayed (the retry budget used).
    retry_count integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    received_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    last_error text,
    UNIQUE (subscription_id, idempotency_key)
);
CREATE INDEX events_subscription_id ON events (subscription_id, id DESC);
-- The graveyard, across a user's subscriptions. Partial: an index over every status would take
-- an entry for each event and for each delivery's update of it; this one only for the failed.
CREATE INDEX events_failed ON events (id DESC) WHERE status = 'failed';
-- What the reaper scans: events still to deliver, by when they are due.
CREATE INDEX events_due ON events (next_attempt_at) WHERE status IN ('pending', 'retrying');
CREATE INDEX events_payload ON events USING gin (payload jsonb_path_ops);

CREATE TABLE delivery_attempts (
    event_id uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    started_at timestamptz NOT NULL,
    duration_ms integer NOT NULL,
    status_code integer,
    error text,
    response_body text,
    PRIMARY KEY (event_id, attempt)
);

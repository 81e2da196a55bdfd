-- The three tables become plain tables again, with every row their partitions held.
ALTER TABLE events RENAME TO events_partitioned;
ALTER TABLE deliveries RENAME TO deliveries_partitioned;
ALTER TABLE delivery_attempts RENAME TO delivery_attempts_partitioned;
ALTER INDEX events_pkey RENAME TO events_partitioned_pkey;
ALTER INDEX events_source_id RENAME TO events_partitioned_source_id;
ALTER INDEX events_payload RENAME TO events_partitioned_payload;
ALTER INDEX deliveries_pkey RENAME TO deliveries_partitioned_pkey;
ALTER INDEX deliveries_due RENAME TO deliveries_partitioned_due;
ALTER INDEX deliveries_failed RENAME TO deliveries_partitioned_failed;
ALTER INDEX deliveries_subscription_id RENAME TO deliveries_partitioned_subscription_id;
ALTER INDEX deliveries_uncounted RENAME TO deliveries_partitioned_uncounted;
ALTER INDEX deliveries_undelivered RENAME TO deliveries_partitioned_undelivered;
ALTER INDEX delivery_attempts_pkey RENAME TO delivery_attempts_partitioned_pkey;
ALTER INDEX delivery_attempts_subscription_started
    RENAME TO delivery_attempts_partitioned_subscription_started;
ALTER TABLE events_partitioned RENAME CONSTRAINT events_source_id_fkey
    TO events_partitioned_source_id_fkey;
ALTER TABLE deliveries_partitioned RENAME CONSTRAINT deliveries_subscription_id_fkey
    TO deliveries_partitioned_subscription_id_fkey;
ALTER TABLE deliveries_partitioned RENAME CONSTRAINT deliveries_status_check
    TO deliveries_partitioned_status_check;
DROP TRIGGER deliveries_take_their_attempts ON deliveries_partitioned;

CREATE TABLE events (
    id uuid PRIMARY KEY,
    source_id uuid NOT NULL
        CONSTRAINT events_source_id_fkey REFERENCES sources (id) ON DELETE CASCADE,
    body bytea NOT NULL,
    payload jsonb,
    content_type text,
    headers jsonb NOT NULL DEFAULT '{}',
    idempotency_key text,
    received_at timestamptz NOT NULL DEFAULT now(),
    path text NOT NULL DEFAULT '',
    query text NOT NULL DEFAULT '',
    CONSTRAINT events_source_id_idempotency_key_key UNIQUE (source_id, idempotency_key)
);
INSERT INTO events SELECT id, source_id, body, payload, content_type, headers, idempotency_key,
    received_at, path, query FROM events_partitioned;
CREATE INDEX events_source_id ON events (source_id, id DESC);
CREATE INDEX events_payload ON events USING gin (payload jsonb_path_ops);

CREATE TABLE deliveries (
    id uuid PRIMARY KEY,
    event_id uuid NOT NULL,
    subscription_id uuid NOT NULL
        CONSTRAINT deliveries_subscription_id_fkey REFERENCES subscriptions (id) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'pending'
        CONSTRAINT deliveries_status_check CHECK (status IN ('pending', 'retrying', 'completed', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    retry_count integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    completed_at timestamptz,
    last_error text,
    leased_until timestamptz,
    republishes integer NOT NULL DEFAULT 0,
    waiting text,
    counted_attempts integer NOT NULL DEFAULT 0,
    due_since timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deliveries_event_id_subscription_id_key UNIQUE (event_id, subscription_id)
);
INSERT INTO deliveries SELECT id, event_id, subscription_id, status, attempts, retry_count,
    next_attempt_at, completed_at, last_error, leased_until, republishes, waiting,
    counted_attempts, due_since FROM deliveries_partitioned;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
    WHERE status IN ('pending', 'retrying');
CREATE INDEX deliveries_failed ON deliveries (id DESC) WHERE status = 'failed';
CREATE INDEX deliveries_subscription_id ON deliveries (subscription_id, id DESC);
CREATE INDEX deliveries_uncounted ON deliveries (subscription_id)
    WHERE status = 'failed' AND attempts > counted_attempts;
CREATE INDEX deliveries_undelivered ON deliveries (subscription_id, due_since)
    WHERE status IN ('pending', 'retrying');

CREATE TABLE delivery_attempts (
    delivery_id uuid NOT NULL,
    attempt integer NOT NULL,
    started_at timestamptz NOT NULL,
    duration_ms integer NOT NULL,
    status_code integer,
    error text,
    response_body text,
    subscription_id uuid,
    PRIMARY KEY (delivery_id, attempt)
);
INSERT INTO delivery_attempts SELECT delivery_id, attempt, started_at, duration_ms, status_code,
    error, response_body, subscription_id FROM delivery_attempts_partitioned;
CREATE INDEX delivery_attempts_subscription_started
    ON delivery_attempts (subscription_id, started_at);

CREATE TRIGGER deliveries_take_their_attempts AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT
    EXECUTE FUNCTION delete_attempts_of_deleted_deliveries();

DROP TABLE delivery_attempts_partitioned, deliveries_partitioned, events_partitioned;
DROP FUNCTION idempotency_key_seen(uuid, text, uuid);
DROP FUNCTION ensure_partitions(date, date);
DROP FUNCTION make_partitions(text, uuid, uuid);
DROP FUNCTION lock_when_free(text[], double precision);
DROP FUNCTION keep_survivors(text, timestamptz, timestamptz);
DROP FUNCTION drop_expired();
DROP FUNCTION detach_for_compaction(text);
DROP TABLE partition_compactions;
DROP FUNCTION first_id_at(timestamptz);

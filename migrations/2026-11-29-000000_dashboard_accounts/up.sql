-- Idle expiry: a session unused for longer than the idle limit ends, whatever its absolute expiry.
ALTER TABLE sessions ADD COLUMN last_seen_at timestamptz NOT NULL DEFAULT now();

-- Shown on the API keys page; written at most about once a minute per key, not per request.
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;

-- Failed log-ins per address (lower-cased, whether or not a user has it), for the throttle.
-- In the database, so that every replica counts the same failures.
CREATE TABLE login_failures (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_email ON login_failures (email, failed_at);

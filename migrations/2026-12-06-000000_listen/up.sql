-- `spenza listen`: a subscription of kind 'cli' delivers to the CLI sessions connected to it
-- over a WebSocket, rather than over HTTP to its target URL (which then only names it).
ALTER TABLE subscriptions ADD COLUMN kind text NOT NULL DEFAULT 'http'
    CHECK (kind IN ('http', 'cli'));
-- A source's CLI subscriptions are found by name: a `listen` with the same name reuses one.
CREATE UNIQUE INDEX subscriptions_cli_name ON subscriptions (source_id, name) WHERE kind = 'cli';

-- The `listen` sessions connected now, one row each, kept by the replica that holds the
-- WebSocket: it refreshes seen_at while the session lives and deletes the row when it ends. A
-- row not refreshed for a while is a replica that died with it, and no longer counts.
CREATE TABLE listen_sessions (
    id uuid PRIMARY KEY,
    subscription_id uuid NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    -- Whose sessions count against the limit: the key's creator, else the key itself.
    holder uuid NOT NULL,
    api_key_id uuid REFERENCES api_keys (id) ON DELETE SET NULL,
    address text,
    replica text NOT NULL,
    connected_at timestamptz NOT NULL DEFAULT now(),
    seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX listen_sessions_subscription ON listen_sessions (subscription_id);
CREATE INDEX listen_sessions_holder ON listen_sessions (holder);

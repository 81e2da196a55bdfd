-- Teams: sources, subscriptions (and through them events) and API keys belong to a workspace
-- rather than to a user; people are its members, each with a role. Each existing user gets a
-- workspace of their own, with their id, that owns what they owned, so ids do not move.
CREATE TABLE workspaces (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE memberships (
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

INSERT INTO workspaces (id, name, created_at) SELECT id, email, created_at FROM users;
INSERT INTO memberships (workspace_id, user_id, role, created_at)
    SELECT id, id, 'owner', created_at FROM users;

ALTER TABLE sources RENAME COLUMN user_id TO workspace_id;
ALTER TABLE sources DROP CONSTRAINT sources_user_id_fkey,
    ADD FOREIGN KEY (workspace_id) REFERENCES workspaces (id) ON DELETE CASCADE;
ALTER INDEX sources_user_id RENAME TO sources_workspace_id;

ALTER TABLE subscriptions RENAME COLUMN user_id TO workspace_id;
ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_user_id_fkey,
    ADD FOREIGN KEY (workspace_id) REFERENCES workspaces (id) ON DELETE CASCADE;
ALTER INDEX subscriptions_user_id RENAME TO subscriptions_workspace_id;

-- A key keeps working as it did: it could do everything its owner could but manage members
-- (there were none), which is what an admin does.
ALTER TABLE api_keys RENAME COLUMN user_id TO workspace_id;
ALTER TABLE api_keys DROP CONSTRAINT api_keys_user_id_fkey,
    ADD FOREIGN KEY (workspace_id) REFERENCES workspaces (id) ON DELETE CASCADE;
ALTER INDEX api_keys_user_id RENAME TO api_keys_workspace_id;
ALTER TABLE api_keys ADD COLUMN role text NOT NULL DEFAULT 'admin'
    CHECK (role IN ('owner', 'admin', 'developer', 'viewer'));
ALTER TABLE api_keys ALTER COLUMN role DROP DEFAULT;
ALTER TABLE api_keys ADD COLUMN created_by uuid REFERENCES users (id) ON DELETE SET NULL;
UPDATE api_keys SET created_by = workspace_id;

-- The workspace a session is looking at; null picks the member's first.
ALTER TABLE sessions ADD COLUMN workspace_id uuid REFERENCES workspaces (id) ON DELETE SET NULL;
UPDATE sessions SET workspace_id = user_id;

-- A single-use link to join a workspace: only its token's hash is kept.
CREATE TABLE invitations (
    id uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email text NOT NULL,
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'viewer')),
    token_hash bytea NOT NULL UNIQUE,
    invited_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    accepted_at timestamptz,
    accepted_by uuid REFERENCES users (id) ON DELETE SET NULL,
    revoked_at timestamptz
);
CREATE INDEX invitations_workspace ON invitations (workspace_id, created_at DESC);

-- Who changed what, written in the transaction of the change. Sign-ins belong to no
-- workspace: a workspace's log shows its members' (actor_id). Rows are never updated;
-- retention deletes old ones. No foreign key: a workspace's lines outlive it (until
-- retention), the line saying who deleted it among them.
CREATE TABLE audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id uuid,
    at timestamptz NOT NULL DEFAULT now(),
    -- 'user', 'key' or 'anonymous' (a failed sign-in with an unknown address).
    actor_type text NOT NULL,
    actor_id uuid,
    -- The user's address or the key's name, as it was then.
    actor text NOT NULL,
    action text NOT NULL,
    object_type text NOT NULL,
    object_id text,
    ip text,
    -- A few words more, never a secret: "viewer → admin", "12 deliveries".
    detail text
);
CREATE INDEX audit_log_workspace ON audit_log (workspace_id, id DESC);
CREATE INDEX audit_log_actor ON audit_log (actor_id, id DESC) WHERE workspace_id IS NULL;
CREATE INDEX audit_log_at ON audit_log (at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

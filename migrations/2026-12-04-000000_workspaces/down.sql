DROP TABLE audit_log;
DROP FUNCTION audit_log_append_only();
DROP TABLE invitations;
ALTER TABLE sessions DROP COLUMN workspace_id;
ALTER TABLE api_keys DROP COLUMN created_by, DROP COLUMN role;
ALTER TABLE api_keys DROP CONSTRAINT api_keys_workspace_id_fkey;
ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_workspace_id_fkey;
ALTER TABLE sources DROP CONSTRAINT sources_workspace_id_fkey;
-- Each workspace's objects go back to its first owner.
CREATE TEMPORARY TABLE first_owners AS
    SELECT DISTINCT ON (workspace_id) workspace_id, user_id FROM memberships
    WHERE role = 'owner' ORDER BY workspace_id, created_at;
UPDATE api_keys SET workspace_id = f.user_id FROM first_owners f WHERE f.workspace_id = api_keys.workspace_id;
UPDATE sources SET workspace_id = f.user_id FROM first_owners f WHERE f.workspace_id = sources.workspace_id;
UPDATE subscriptions SET workspace_id = f.user_id FROM first_owners f
    WHERE f.workspace_id = subscriptions.workspace_id;
ALTER TABLE api_keys RENAME COLUMN workspace_id TO user_id;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;
ALTER INDEX api_keys_workspace_id RENAME TO api_keys_user_id;
ALTER TABLE subscriptions RENAME COLUMN workspace_id TO user_id;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;
ALTER INDEX subscriptions_workspace_id RENAME TO subscriptions_user_id;
ALTER TABLE sources RENAME COLUMN workspace_id TO user_id;
ALTER TABLE sources ADD CONSTRAINT sources_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;
ALTER INDEX sources_workspace_id RENAME TO sources_user_id;
DROP TABLE memberships;
DROP TABLE workspaces;

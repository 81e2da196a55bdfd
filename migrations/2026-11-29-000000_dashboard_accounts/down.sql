DROP TABLE login_failures;
ALTER TABLE api_keys DROP COLUMN last_used_at;
ALTER TABLE sessions DROP COLUMN last_seen_at;

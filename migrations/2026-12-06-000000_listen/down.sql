DROP TABLE listen_sessions;
DROP INDEX subscriptions_cli_name;
ALTER TABLE subscriptions DROP COLUMN kind;

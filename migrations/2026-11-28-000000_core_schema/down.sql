DROP TABLE delivery_attempts;
DROP TABLE events;
DROP TABLE subscriptions;
DROP TABLE api_keys;
DROP TABLE sessions;
DROP TABLE users;

DROP TABLE rate_limits;
ALTER TABLE deliveries DROP COLUMN waiting;
ALTER TABLE subscriptions DROP COLUMN policy;

DROP TABLE notifications;
DROP TABLE notification_channels;
DROP INDEX rejected_requests_received;
ALTER TABLE deliveries DROP COLUMN due_since, DROP COLUMN counted_attempts;
DROP TABLE issues;

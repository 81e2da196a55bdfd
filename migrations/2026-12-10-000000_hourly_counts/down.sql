DROP TABLE source_hours;
ALTER TABLE attempt_hours DROP COLUMN deliveries;

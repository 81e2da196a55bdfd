DROP TABLE attempt_hours;

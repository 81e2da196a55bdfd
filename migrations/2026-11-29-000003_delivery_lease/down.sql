ALTER TABLE events DROP COLUMN republishes;
ALTER TABLE events DROP COLUMN leased_until;

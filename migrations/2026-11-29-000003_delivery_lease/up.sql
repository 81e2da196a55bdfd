-- One attempt chain per event. A delivery claims the event before attempting it and holds it
-- with a lease for about the length of an attempt, so a second copy of its message (a reaper
-- republish of an event still waiting in a long queue, a redelivery after a lost connection)
-- is dropped without an attempt; a crash mid-attempt leaves the lease to expire, and the reaper
-- publishes the event again. `republishes` counts the reaper's publishes since the event was
-- last claimed: each waits twice as long as the one before (up to 64 grace periods), so a
-- backlog is not republished every grace period. Both are cheap to add: no rewrite.
ALTER TABLE events ADD COLUMN leased_until timestamptz;
ALTER TABLE events ADD COLUMN republishes integer NOT NULL DEFAULT 0;

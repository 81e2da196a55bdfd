-- What the dashboard's lists count over the last day, kept per settled hour as attempt_hours
-- keeps a subscription's attempts: each subscription's deliveries made in the hour (one for each
-- event it matched), and each source's events received in it. Counted from the rows, a list
-- read a day of every busy source's events and deliveries at each view: 300 ms for a source of
-- a million events a day, growing with the traffic. The hours already counted are counted again,
-- with their deliveries, when next shown.
DELETE FROM attempt_hours;
ALTER TABLE attempt_hours ADD COLUMN deliveries bigint NOT NULL;

CREATE TABLE source_hours (
    source_id uuid NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    hour timestamptz NOT NULL,
    events bigint NOT NULL,
    PRIMARY KEY (source_id, hour)
);

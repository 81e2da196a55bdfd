-- The tables that grow with every event (events, deliveries, delivery_attempts) stop checking
-- foreign keys between each other. Such a key costs a row lock on the referenced row for every
-- delivery stored and every attempt recorded, and it would tie the tables' partitions together
-- (a partition of a referenced table cannot be dropped on its own). Nothing depended on them:
-- - a delivery's event goes only with its source, whose subscriptions, and so their deliveries,
--   go too (through `deliveries_subscription_id_fkey`, kept), and retention removes an event
--   only once it has no delivery left;
-- - a delivery's attempts go with it: the trigger below removes them, once per statement, for
--   every way a delivery is deleted (retention, or a subscription, source or workspace deleted).
ALTER TABLE deliveries DROP CONSTRAINT deliveries_event_id_fkey;
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_delivery_id_fkey;

CREATE FUNCTION delete_attempts_of_deleted_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM delivery_attempts USING deleted WHERE delivery_attempts.delivery_id = deleted.id;
    RETURN NULL;
END $$;

CREATE TRIGGER deliveries_take_their_attempts AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT
    EXECUTE FUNCTION delete_attempts_of_deleted_deliveries();
